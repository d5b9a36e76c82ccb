"""run_preflight: gather once, evaluate every check, return a report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from ipaddress import IPv4Network

from access.aws.calls import AwsClients
from access.aws.iam import IamPolicies, parse_principal
from access.errors import InvalidInput, NotFound
from access.preflight import ami, checks, network
from access.preflight.gather import Facts, candidate_endpoint, gather
from access.preflight.report import Check, PreflightReport, failure


def _vpc_cidrs(facts: Facts) -> tuple[IPv4Network, ...]:
    vpc = facts.vpc or {}
    blocks = [a.get("CidrBlock") for a in vpc.get("CidrBlockAssociationSet", []) or []]
    blocks = [b for b in blocks if b] or ([vpc["CidrBlock"]] if vpc.get("CidrBlock") else [])
    return tuple(IPv4Network(b, strict=False) for b in blocks)


def evaluate(
    facts: Facts, *, port: int, os_user: str, overshoot_s: int = 300, allow_describe: bool = False
) -> list[Check]:
    """Every check, in the order a person should read them (pure)."""
    instance = facts.instance
    endpoint = candidate_endpoint(instance, facts.endpoints)
    found: list[Check] = [
        checks.instance_state(instance),
        checks.instance_address(instance, endpoint),
        checks.endpoint_state(instance, facts.endpoints, endpoint),
    ]
    if endpoint is not None:
        subnet = facts.subnets.get(endpoint.subnet_id, {}).get("CidrBlock")
        path = network.Path(
            instance=instance,
            endpoint=endpoint,
            groups=facts.security_groups,
            vpc_cidrs=_vpc_cidrs(facts),
            endpoint_subnet=IPv4Network(subnet) if subnet else None,
            port=port,
        )
        found += [network.endpoint_egress(path), network.instance_ingress(path)]
        found += network.network_acls(path, facts.network_acls)
        found += [
            checks.client_ip_preservation(instance, endpoint),
            checks.transit_gateway(instance, endpoint, facts.transit_gateway_attachments),
        ]
    found += [
        ami.os_user(instance.image_id, facts.image, os_user),
        ami.instance_connect(instance.image_id, facts.image, port),
        checks.principal(facts.principal),
    ]
    if facts.principal is not None and facts.principal.exists:
        size = checks.estimated_grant_size(instance, endpoint, port, os_user, overshoot_s, allow_describe)
        found.append(checks.policy_budget(facts.principal, size))
    found.append(checks.port_known(port))
    return found


def run_preflight(
    clients: AwsClients,
    regions: Sequence[str],
    instance_ref: str,
    *,
    port: int = 22,
    os_user: str = "ec2-user",
    principal_arn: str | None = None,
    iam: IamPolicies | None = None,
    inline_used: int | None = None,
    overshoot_s: int = 300,
    allow_describe: bool = False,
    now: datetime | None = None,
) -> PreflightReport:
    """Prove, before anyone approves, that `instance_ref` is reachable through its endpoint.

    Args:
        clients: boto3 clients (the standard AWS environment, or the sandbox's).
        regions: where to look for the instance.
        instance_ref: an instance ID or a unique Name tag.
        port: the remote port the tunnel will open.
        os_user: the login user SendSSHPublicKey will be scoped to.
        principal_arn: the requester's IAM role or user, whose inline-policy budget is checked.
        iam: inline-policy adapter (defaults to one over `clients`).
        inline_used: the principal's inline-policy characters, when the caller has just
            measured them (else they are read from IAM).
        overshoot_s: the grant's tunnel overshoot (`max_tunnel_overshoot`), which sets how
            many slices, and so how many characters, a grant policy has.
        allow_describe: the grant's policy also allows the EC2 Describe calls (the rule's).
        now: when the check ran (defaults to the system clock).

    Raises:
        InvalidInput: a malformed instance reference, port or principal ARN.
        Ambiguous: a Name tag that matches several instances.
    """
    if not 1 <= port <= 65535:
        raise InvalidInput(f"port {port} is not between 1 and 65535")
    if principal_arn is not None:
        parse_principal(principal_arn)
    started = time.monotonic()
    checked_at = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    try:
        facts = gather(
            clients,
            regions,
            instance_ref,
            principal_arn=principal_arn,
            iam=iam or IamPolicies(clients),
            inline_used=inline_used,
        )
    except NotFound as exc:
        return PreflightReport(
            instance_ref=instance_ref,
            port=port,
            os_user=os_user,
            checks=(failure("instance", exc.message),),
            principal_arn=principal_arn,
            checked_at=checked_at,
            elapsed_ms=int((time.monotonic() - started) * 1000),
        )
    endpoint = candidate_endpoint(facts.instance, facts.endpoints)
    return PreflightReport(
        instance_ref=instance_ref,
        port=port,
        os_user=os_user,
        checks=tuple(
            evaluate(
                facts, port=port, os_user=os_user, overshoot_s=overshoot_s, allow_describe=allow_describe
            )
        ),
        instance_id=facts.instance.instance_id,
        region=facts.instance.region,
        endpoint_id=endpoint.endpoint_id if endpoint else None,
        principal_arn=principal_arn,
        checked_at=checked_at,
        elapsed_ms=int((time.monotonic() - started) * 1000),
    )
