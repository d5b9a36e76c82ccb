"""The instance, endpoint, client-IP, principal and port checks: functions of gathered facts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from access.aws.ec2 import USABLE_ENDPOINT_STATES, EndpointInfo, InstanceInfo
from access.grants.policy import GrantScope, grant_policy, inline_limit, policy_size
from access.preflight.gather import PrincipalFacts
from access.preflight.report import Check, failure, ok, warning

KNOWN_PORTS = frozenset({22, 3389})
# Client IP preservation fails on these instance type families (FACTS.md).
NO_PRESERVATION_FAMILIES = frozenset({"c1", "cg1", "cg2", "g1", "hi1", "m1", "m2", "m3", "t1"})
# A grant's policy as long as one can be: a window of at least an hour has every slice.
ESTIMATE_WINDOW = timedelta(hours=8)
ESTIMATE_START = datetime(2030, 1, 1, tzinfo=UTC)


def instance_state(instance: InstanceInfo) -> Check:
    name, iid = "instance", instance.instance_id
    region = instance.region
    if instance.state == "running":
        label = f" ({instance.name})" if instance.name else ""
        return ok(name, f"{iid}{label} is running in {region}")
    if instance.state == "pending":
        return warning(name, f"{iid} is still pending (starting)", "wait for it to be running")
    if instance.state in ("stopped", "stopping"):
        return failure(
            name,
            f"{iid} is {instance.state}",
            f"aws ec2 start-instances --instance-ids {iid} --region {region}",
        )
    return failure(name, f"{iid} is {instance.state}")


def endpoint_ip_type(endpoint: EndpointInfo | None) -> str:
    if endpoint is None:
        return "ipv4"
    return str(endpoint.raw.get("IpAddressType") or "ipv4")


def _ipv6_addresses(instance: InstanceInfo) -> list[str]:
    found = [instance.raw.get("Ipv6Address")] if instance.raw.get("Ipv6Address") else []
    for eni in instance.raw.get("NetworkInterfaces", []) or []:
        found += [a.get("Ipv6Address") for a in eni.get("Ipv6Addresses", []) or []]
    return [a for a in found if a]


def instance_address(instance: InstanceInfo, endpoint: EndpointInfo | None) -> Check:
    """The instance has an address of the endpoint's IP type."""
    name, kind = "address", endpoint_ip_type(endpoint)
    v6 = _ipv6_addresses(instance)
    if kind in ("ipv4", "dualstack") and instance.private_ip:
        return ok(name, f"private IPv4 {instance.private_ip} ({kind} endpoint)")
    if kind in ("ipv6", "dualstack") and v6:
        return ok(name, f"IPv6 {v6[0]} ({kind} endpoint)")
    wanted = "a private IPv4 address" if kind == "ipv4" else "an IPv6 address"
    return failure(
        name,
        f"{instance.instance_id} has no {wanted}, which a {kind} endpoint needs",
        "use an endpoint whose IP address type matches the instance's",
    )


def _create_endpoint(instance: InstanceInfo) -> str:
    return (
        f"aws ec2 create-instance-connect-endpoint --subnet-id {instance.subnet_id} "
        f"--security-group-ids <endpoint-sg-id> --region {instance.region}"
    )


def endpoint_state(
    instance: InstanceInfo, endpoints: Sequence[EndpointInfo], endpoint: EndpointInfo | None
) -> Check:
    """A usable endpoint in the instance's VPC (its own subnet preferred)."""
    name = "endpoint"
    if endpoint is None:
        return failure(
            name,
            f"no EC2 Instance Connect Endpoint in {instance.vpc_id}",
            _create_endpoint(instance),
        )
    eid, region = endpoint.endpoint_id, instance.region
    preservation = "on" if endpoint.preserve_client_ip else "off"
    if endpoint.state == "create-in-progress":
        return warning(
            name,
            f"{eid} is still being created",
            f"aws ec2 wait instance-connect-endpoint-available --instance-connect-endpoint-ids "
            f"{eid} --region {region}",
        )
    if endpoint.state not in USABLE_ENDPOINT_STATES:
        message = endpoint.raw.get("StateMessage") or ""
        return failure(
            name,
            f"{eid} is {endpoint.state}" + (f" ({message})" if message else ""),
            f"aws ec2 delete-instance-connect-endpoint --instance-connect-endpoint-id {eid} "
            f"--region {region}, then {_create_endpoint(instance)}",
        )
    where = (
        "in the instance's subnet"
        if endpoint.subnet_id == instance.subnet_id
        else f"in {endpoint.subnet_id} (instance in {instance.subnet_id})"
    )
    others = len([e for e in endpoints if e.vpc_id == instance.vpc_id]) - 1
    extra = f"; {others} other endpoint(s) in the VPC" if others > 0 else ""
    return ok(name, f"{eid} is {endpoint.state} {where}, client IP preservation {preservation}{extra}")


def _family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0].lower()


def _recreate_without_preservation(endpoint: EndpointInfo, region: str) -> str:
    groups = " ".join(endpoint.security_group_ids) or "<endpoint-sg-id>"
    return (
        f"aws ec2 delete-instance-connect-endpoint --instance-connect-endpoint-id "
        f"{endpoint.endpoint_id} --region {region}, then aws ec2 create-instance-connect-endpoint "
        f"--subnet-id {endpoint.subnet_id} --security-group-ids {groups} --no-preserve-client-ip "
        f"--region {region}"
    )


def client_ip_preservation(instance: InstanceInfo, endpoint: EndpointInfo) -> Check:
    """Preservation is IPv4 only and fails on some old instance type families."""
    name = "client-ip-preservation"
    if not endpoint.preserve_client_ip:
        return ok(name, f"off on {endpoint.endpoint_id}")
    if _family(instance.instance_type) in NO_PRESERVATION_FAMILIES:
        return failure(
            name,
            f"client IP preservation is on and {instance.instance_type} "
            f"({_family(instance.instance_type).upper()}) does not support it",
            _recreate_without_preservation(endpoint, instance.region),
        )
    if endpoint_ip_type(endpoint) != "ipv4":
        return warning(
            name,
            f"client IP preservation is IPv4 only; {endpoint.endpoint_id} is {endpoint_ip_type(endpoint)}",
        )
    return ok(name, f"on, and {instance.instance_type} supports it")


def transit_gateway(
    instance: InstanceInfo, endpoint: EndpointInfo, attachments: list[dict[str, Any]] | None
) -> Check:
    """Preserved client IPs do not survive a Transit Gateway."""
    name = "transit-gateway"
    if not endpoint.preserve_client_ip or attachments is None:
        return ok(name, "client IP preservation off: not relevant")
    live = [a for a in attachments if a.get("State") not in ("deleted", "deleting", "failed")]
    if not live:
        return ok(name, f"{instance.vpc_id} has no Transit Gateway attachment")
    tgw = live[0].get("TransitGatewayId", "?")
    return warning(
        name,
        f"{instance.vpc_id} is attached to Transit Gateway {tgw}; client IP preservation does "
        "not work for traffic routed through it",
        _recreate_without_preservation(endpoint, instance.region),
    )


def estimated_grant_size(
    instance: InstanceInfo,
    endpoint: EndpointInfo | None,
    port: int,
    user: str,
    overshoot_s: int = 300,
    allow_describe: bool = False,
) -> int:
    """Characters one more grant's inline policy takes (the longest shape a grant has)."""
    scope = GrantScope(
        account_id=instance.account_id or "123456789012",
        region=instance.region,
        instance_id=instance.instance_id,
        endpoint_id=endpoint.endpoint_id if endpoint else "eice-0123456789abcdef0",
        private_ip=instance.private_ip or "255.255.255.255",
        port=port,
        os_user=user,
        starts_at=ESTIMATE_START,
        expires_at=ESTIMATE_START + ESTIMATE_WINDOW,
        overshoot_s=overshoot_s,
        allow_describe=allow_describe,
        owner="f" * 16,  # an installation ID's length (`access.installation`)
    )
    return policy_size(grant_policy(scope))


def principal(facts: PrincipalFacts | None) -> Check:
    name = "principal"
    if facts is None:
        return warning(
            name,
            "no requester IAM principal given: the grant policy budget was not checked",
            "pass --principal <role-or-user-arn> (in Slack: /eice link @user <arn>)",
        )
    if not facts.exists:
        kind = "user" if ":user/" in facts.arn else "role"
        return failure(
            name,
            f"IAM {kind} {facts.arn} does not exist",
            f"create the {kind}, or map the requester to an existing one: /eice link @user <arn>",
        )
    return ok(name, f"{facts.arn} exists")


def policy_budget(facts: PrincipalFacts, grant_size: int) -> Check:
    """Room in the principal's inline-policy quota for one more grant."""
    name = "policy-budget"
    limit = inline_limit(facts.arn)
    kind = "user" if ":user/" in facts.arn else "role"
    total = facts.inline_used + grant_size
    used = f"{facts.inline_used:,} of {limit:,} inline-policy characters used"
    if total <= limit:
        return ok(name, f"{used}; one more grant (~{grant_size:,}) fits")
    target = facts.arn.rsplit("/", 1)[-1]
    return failure(
        name,
        f"{used}; one more grant (~{grant_size:,}) would exceed the {kind} limit",
        f"aws iam list-{kind}-policies --{kind}-name {target}, then aws iam delete-{kind}-policy "
        f"--{kind}-name {target} --policy-name <unneeded-policy>",
    )


def port_known(port: int) -> Check:
    name = "port"
    if port in KNOWN_PORTS:
        return ok(name, f"{port} is a port EICE accepts")
    return warning(
        name,
        f"port {port} is unverified: EICE historically accepted only 22 and 3389",
        "use --port 22 (or 3389), or try a tunnel before relying on it",
    )
