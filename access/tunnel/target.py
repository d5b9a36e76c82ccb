"""Where a tunnel goes: the endpoint and private IP for an instance, found with boto3."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from access.aws.calls import AWS_FAILURES
from access.errors import NotFound, first_line
from access.tunnel.errors import TunnelError

USABLE_STATES = ("create-complete", "update-in-progress", "update-complete", "update-failed")


@dataclass(frozen=True)
class TunnelTarget:
    """Everything a presigned OpenTunnel URL names."""

    region: str
    endpoint_id: str
    dns_name: str
    private_ip: str
    remote_port: int = 22
    instance_id: str | None = None


def _instance(ec2: Any, instance: str) -> dict[str, Any]:
    if instance.startswith("i-"):
        kwargs: dict[str, Any] = {"InstanceIds": [instance]}
    else:
        kwargs = {"Filters": [{"Name": "tag:Name", "Values": [instance]}]}
    answer = ec2.describe_instances(**kwargs)
    found = [i for r in answer.get("Reservations", []) for i in r.get("Instances", [])]
    found = [i for i in found if i.get("State", {}).get("Name") != "terminated"]
    if len(found) != 1:
        what = "no instance" if not found else f"{len(found)} instances"
        raise NotFound(f"{what} found for {instance!r}")
    return dict(found[0])


def choose_endpoint(endpoints: list[dict[str, Any]], subnet_id: str | None) -> dict[str, Any] | None:
    """An endpoint in the instance's subnet if there is one, else any usable one in its VPC."""
    usable = [e for e in endpoints if e.get("State") in USABLE_STATES]
    in_subnet = [e for e in usable if e.get("SubnetId") == subnet_id]
    candidates = in_subnet or usable
    return candidates[0] if candidates else None


def resolve_target(
    session: Any,
    instance: str | None,
    *,
    remote_port: int = 22,
    endpoint_id: str | None = None,
    dns_name: str | None = None,
    private_ip: str | None = None,
) -> TunnelTarget:
    """Fill in what the caller did not give, from DescribeInstances and the endpoint list.

    Args:
        session: a boto3 Session (its region is the endpoint's region).
        instance: an instance id or Name tag; may be None when everything else is given.
        remote_port, endpoint_id, dns_name, private_ip: given values are used as they are.
    """
    region = session.region_name
    if not region:
        raise TunnelError("no AWS region: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION")
    if endpoint_id and dns_name and private_ip:
        return TunnelTarget(region, endpoint_id, dns_name, private_ip, remote_port, instance)
    ec2 = session.client("ec2")
    try:
        details = _instance(ec2, instance) if instance and not (private_ip and endpoint_id) else {}
        instance_id = details.get("InstanceId", instance)
        private_ip = private_ip or details.get("PrivateIpAddress")
        if not private_ip:
            raise TunnelError(f"{instance} has no private IPv4 address")
        if endpoint_id:
            filters = [{"Name": "instance-connect-endpoint-id", "Values": [endpoint_id]}]
        elif details.get("VpcId"):
            filters = [{"Name": "vpc-id", "Values": [details["VpcId"]]}]
        else:
            raise TunnelError("cannot choose an endpoint: pass --endpoint-id")
        pages = ec2.get_paginator("describe_instance_connect_endpoints").paginate(Filters=filters)
        endpoints = [e for page in pages for e in page.get("InstanceConnectEndpoints", [])]
    except AWS_FAILURES as exc:
        raise TunnelError(f"could not look up the instance or its endpoint: {first_line(exc)}") from exc
    endpoint = choose_endpoint(endpoints, details.get("SubnetId"))
    if endpoint is None:
        raise NotFound(f"no usable EC2 Instance Connect Endpoint for {instance or endpoint_id}")
    return TunnelTarget(
        region=region,
        endpoint_id=endpoint["InstanceConnectEndpointId"],
        dns_name=dns_name or endpoint["DnsName"],
        private_ip=private_ip,
        remote_port=remote_port,
        instance_id=instance_id,
    )
