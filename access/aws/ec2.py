"""Finding an instance (by ID or unique Name tag) and the endpoint that reaches it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from access.aws.calls import AwsClients, error_code, with_retries
from access.aws.lookups import memoised, remember
from access.errors import Ambiguous, InvalidInput, NotFound

INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
NAME_TAG = re.compile(r"^[\w .:/=+@-]{1,255}$")
USABLE_ENDPOINT_STATES = frozenset(
    {"create-complete", "update-in-progress", "update-complete", "update-failed"}
)


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    account_id: str
    region: str
    name: str
    tags: dict[str, str]
    state: str
    vpc_id: str
    subnet_id: str
    private_ip: str
    instance_type: str = ""
    image_id: str = ""
    security_group_ids: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class EndpointInfo:
    endpoint_id: str
    arn: str
    dns_name: str
    state: str
    vpc_id: str
    subnet_id: str
    preserve_client_ip: bool
    security_group_ids: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _tags(obj: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in obj.get("Tags", []) or []}


def _instance(reservation: dict[str, Any], instance: dict[str, Any], region: str) -> InstanceInfo:
    tags = _tags(instance)
    return InstanceInfo(
        instance_id=instance["InstanceId"],
        account_id=str(reservation.get("OwnerId", "")),
        region=region,
        name=tags.get("Name", ""),
        tags=tags,
        state=instance.get("State", {}).get("Name", "unknown"),
        vpc_id=instance.get("VpcId", ""),
        subnet_id=instance.get("SubnetId", ""),
        private_ip=instance.get("PrivateIpAddress", ""),
        instance_type=instance.get("InstanceType", ""),
        image_id=instance.get("ImageId", ""),
        security_group_ids=tuple(g["GroupId"] for g in instance.get("SecurityGroups", [])),
        raw=instance,
    )


def _describe(clients: AwsClients, region: str, **kwargs: Any) -> list[InstanceInfo]:
    ec2 = clients.ec2(region)
    found: list[InstanceInfo] = []
    token: str | None = None
    while True:
        page_args = dict(kwargs)
        if token:
            page_args["NextToken"] = token
        try:
            page = with_retries(lambda a=page_args: ec2.describe_instances(**a))  # type: ignore[misc]
        except Exception as exc:
            if error_code(exc) in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
                return []
            raise
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                found.append(_instance(reservation, instance, region))
        token = page.get("NextToken")
        if not token:
            return found


def find_instance(clients: AwsClients, regions: Sequence[str], ref: str) -> InstanceInfo:
    """The one instance `ref` names: an instance ID, or a Name tag unique across `regions`.

    Raises:
        InvalidInput: `ref` is neither an instance ID nor a plausible name.
        NotFound: nothing matches.
        Ambiguous: a Name tag matches several instances (they are listed).
    """
    ref = ref.strip()
    key = ("instance", id(clients), tuple(regions), ref)
    found = memoised(key, lambda: _find_instance(clients, regions, ref))
    remember(("instance", id(clients), tuple(regions), found.instance_id), found)
    return found


def _find_instance(clients: AwsClients, regions: Sequence[str], ref: str) -> InstanceInfo:
    if ref.startswith("i-"):
        if not INSTANCE_ID.match(ref):
            raise InvalidInput(f"{ref[:40]!r} is not an instance ID (i- and 8 or 17 hex digits)")
        for region in regions:
            matches = _describe(clients, region, InstanceIds=[ref])
            if matches:
                return matches[0]
        raise NotFound(f"no instance {ref} in {', '.join(regions)}")
    if not NAME_TAG.match(ref):
        raise InvalidInput(f"{ref[:40]!r} is neither an instance ID nor an instance Name tag")
    matches = []
    live = ["pending", "running", "stopping", "stopped"]
    for region in regions:
        matches += _describe(
            clients,
            region,
            Filters=[
                {"Name": "tag:Name", "Values": [ref]},
                {"Name": "instance-state-name", "Values": live},
            ],
        )
    if not matches:
        raise NotFound(f"no instance named {ref!r} in {', '.join(regions)}")
    if len(matches) > 1:
        listed = ", ".join(f"{m.instance_id} ({m.region})" for m in matches[:10])
        raise Ambiguous(f"{len(matches)} instances are named {ref!r}: {listed}; use the instance ID")
    return matches[0]


def _endpoint(raw: dict[str, Any]) -> EndpointInfo:
    return EndpointInfo(
        endpoint_id=raw["InstanceConnectEndpointId"],
        arn=raw.get("InstanceConnectEndpointArn", ""),
        dns_name=raw.get("DnsName", ""),
        state=raw.get("State", ""),
        vpc_id=raw.get("VpcId", ""),
        subnet_id=raw.get("SubnetId", ""),
        preserve_client_ip=bool(raw.get("PreserveClientIp", False)),
        security_group_ids=tuple(raw.get("SecurityGroupIds", []) or []),
        raw=raw,
    )


def list_endpoints(clients: AwsClients, region: str, vpc_id: str) -> list[EndpointInfo]:
    """Every endpoint in the VPC, whatever its state."""
    key = ("endpoints", id(clients), region, vpc_id)
    return list(memoised(key, lambda: _list_endpoints(clients, region, vpc_id)))


def _list_endpoints(clients: AwsClients, region: str, vpc_id: str) -> list[EndpointInfo]:
    ec2 = clients.ec2(region)
    found: list[EndpointInfo] = []
    token: str | None = None
    while True:
        args: dict[str, Any] = {
            "Filters": [{"Name": "vpc-id", "Values": [vpc_id]}],
            "MaxResults": 50,
        }
        if token:
            args["NextToken"] = token
        page = with_retries(lambda a=args: ec2.describe_instance_connect_endpoints(**a))  # type: ignore[misc]
        found += [_endpoint(e) for e in page.get("InstanceConnectEndpoints", [])]
        token = page.get("NextToken")
        if not token:
            return found


def choose_endpoint(instance: InstanceInfo, endpoints: Sequence[EndpointInfo]) -> EndpointInfo:
    """A usable endpoint in the instance's subnet if any, else one in its VPC.

    Raises:
        NotFound: no usable endpoint (the message says what exists and in which state).
    """
    usable = [e for e in endpoints if e.state in USABLE_ENDPOINT_STATES and e.vpc_id == instance.vpc_id]
    same_subnet = [e for e in usable if e.subnet_id == instance.subnet_id]
    if same_subnet or usable:
        return (same_subnet or usable)[0]
    if endpoints:
        states = ", ".join(f"{e.endpoint_id} is {e.state}" for e in endpoints)
        raise NotFound(f"no usable EC2 Instance Connect Endpoint in {instance.vpc_id}: {states}")
    raise NotFound(
        f"no EC2 Instance Connect Endpoint in {instance.vpc_id}; create one with "
        f"`aws ec2 create-instance-connect-endpoint --subnet-id {instance.subnet_id}`"
    )


def find_endpoint(clients: AwsClients, instance: InstanceInfo) -> EndpointInfo:
    """The endpoint a tunnel to `instance` goes through."""
    return choose_endpoint(instance, list_endpoints(clients, instance.region, instance.vpc_id))
