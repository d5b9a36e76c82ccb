"""The few AWS calls a pre-flight makes; everything else is evaluated from their answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from access.aws.calls import AwsClients, error_code, with_retries
from access.aws.ec2 import (
    USABLE_ENDPOINT_STATES,
    EndpointInfo,
    InstanceInfo,
    find_instance,
    list_endpoints,
)
from access.aws.iam import IamPolicies


@dataclass(frozen=True)
class PrincipalFacts:
    arn: str
    exists: bool
    inline_used: int = 0


@dataclass
class Facts:
    """What AWS said about an instance and everything between it and its endpoint."""

    instance: InstanceInfo
    endpoints: list[EndpointInfo] = field(default_factory=list)
    security_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    network_acls: list[dict[str, Any]] = field(default_factory=list)
    subnets: dict[str, dict[str, Any]] = field(default_factory=dict)
    vpc: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    # None: not asked (client IP preservation is off).
    transit_gateway_attachments: list[dict[str, Any]] | None = None
    principal: PrincipalFacts | None = None


def _ec2_list(call: Any, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    """One Describe* call (the pages it takes); a vanished ID reads as nothing found."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        args = dict(kwargs)
        if token:
            args["NextToken"] = token
        try:
            page = with_retries(lambda a=args: call(**a))  # type: ignore[misc]
        except Exception as exc:
            if error_code(exc).endswith((".NotFound", ".Malformed")):
                return found
            raise
        found += page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return found


def gather_network(clients: AwsClients, facts: Facts, endpoint: EndpointInfo | None) -> None:
    """Security groups, NACLs, subnets and the VPC: one call each, both sides together."""
    instance = facts.instance
    ec2 = clients.ec2(instance.region)
    group_ids = sorted(
        set(instance.security_group_ids) | set(endpoint.security_group_ids if endpoint else ())
    )
    subnet_ids = sorted({instance.subnet_id} | ({endpoint.subnet_id} if endpoint else set()))
    if group_ids:
        groups = _ec2_list(ec2.describe_security_groups, "SecurityGroups", GroupIds=group_ids)
        facts.security_groups = {g["GroupId"]: g for g in groups}
    facts.network_acls = _ec2_list(
        ec2.describe_network_acls,
        "NetworkAcls",
        Filters=[{"Name": "association.subnet-id", "Values": subnet_ids}],
    )
    subnets = _ec2_list(ec2.describe_subnets, "Subnets", SubnetIds=subnet_ids)
    facts.subnets = {s["SubnetId"]: s for s in subnets}
    vpcs = _ec2_list(ec2.describe_vpcs, "Vpcs", VpcIds=[instance.vpc_id])
    facts.vpc = vpcs[0] if vpcs else None


def gather(
    clients: AwsClients,
    regions: Sequence[str],
    instance_ref: str,
    *,
    principal_arn: str | None,
    iam: IamPolicies,
    inline_used: int | None = None,
) -> Facts:
    """Ask AWS everything the checks need (NotFound/InvalidInput/Ambiguous from find_instance)."""
    instance = find_instance(clients, regions, instance_ref)
    facts = Facts(instance=instance)
    ec2 = clients.ec2(instance.region)
    if instance.vpc_id:
        facts.endpoints = list_endpoints(clients, instance.region, instance.vpc_id)
    endpoint = candidate_endpoint(instance, facts.endpoints)
    if instance.vpc_id:
        gather_network(clients, facts, endpoint)
    if instance.image_id:
        images = _ec2_list(ec2.describe_images, "Images", ImageIds=[instance.image_id])
        facts.image = images[0] if images else None
    if endpoint is not None and endpoint.preserve_client_ip:
        facts.transit_gateway_attachments = _ec2_list(
            ec2.describe_transit_gateway_vpc_attachments,
            "TransitGatewayVpcAttachments",
            Filters=[{"Name": "vpc-id", "Values": [instance.vpc_id]}],
        )
    if principal_arn:
        if iam.exists(principal_arn):
            used = iam.inline_size_used(principal_arn) if inline_used is None else inline_used
            facts.principal = PrincipalFacts(principal_arn, True, used)
        else:
            facts.principal = PrincipalFacts(principal_arn, False)
    return facts


def candidate_endpoint(instance: InstanceInfo, endpoints: Sequence[EndpointInfo]) -> EndpointInfo | None:
    """The endpoint a tunnel would use: usable first, same subnet first; else any in the VPC.

    An unusable one is still returned so the network checks can say what else would fail.
    """
    in_vpc = [e for e in endpoints if e.vpc_id == instance.vpc_id]

    def rank(e: EndpointInfo) -> tuple[bool, bool]:
        return (e.state not in USABLE_ENDPOINT_STATES, e.subnet_id != instance.subnet_id)

    return min(in_vpc, key=rank) if in_vpc else None
