"""Security group and network ACL evaluation between an endpoint and an instance (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network
from typing import Any

from access.aws.ec2 import EndpointInfo, InstanceInfo
from access.preflight.report import Check, failure, ok, warning

EPHEMERAL = (1024, 65535)
DEFAULT_RULE = 32767
TCP = ("-1", "tcp", "6")


def _net(cidr: str | None) -> IPv4Network | None:
    if not cidr:
        return None
    try:
        net = ip_network(cidr, strict=False)
    except ValueError:
        return None
    return net if isinstance(net, IPv4Network) else None


def _covers_port(permission: dict[str, Any], port: int) -> bool:
    protocol = str(permission.get("IpProtocol", ""))
    if protocol == "-1":
        return True
    if protocol not in TCP:
        return False
    return int(permission.get("FromPort", -1)) <= port <= int(permission.get("ToPort", -1))


def _pairs(permission: dict[str, Any]) -> list[str]:
    return [p.get("GroupId", "") for p in permission.get("UserIdGroupPairs", []) or []]


def _cidrs(permission: dict[str, Any]) -> list[IPv4Network]:
    nets = (_net(r.get("CidrIp")) for r in permission.get("IpRanges", []) or [])
    return [n for n in nets if n is not None]


@dataclass(frozen=True)
class Path:
    """The two ends of the tunnel's last hop and what lies between them."""

    instance: InstanceInfo
    endpoint: EndpointInfo
    groups: dict[str, dict[str, Any]]
    vpc_cidrs: tuple[IPv4Network, ...]
    endpoint_subnet: IPv4Network | None
    port: int

    @property
    def instance_address(self) -> IPv4Network | None:
        return _net(f"{self.instance.private_ip}/32") if self.instance.private_ip else None

    @property
    def endpoint_source(self) -> IPv4Network | None:
        """Where the endpoint's traffic comes from: its subnet, else the VPC."""
        return self.endpoint_subnet or (self.vpc_cidrs[0] if self.vpc_cidrs else None)

    @property
    def region(self) -> str:
        return self.instance.region


def endpoint_egress(path: Path) -> Check:
    """The endpoint's security groups let it reach the instance on the port."""
    name, port = "endpoint-sg-egress", path.port
    target = path.instance_address
    missing = [g for g in path.endpoint.security_group_ids if g not in path.groups]
    if not path.endpoint.security_group_ids or missing:
        return failure(
            name,
            f"endpoint {path.endpoint.endpoint_id} security groups {missing or 'none'} not found",
            "recreate the endpoint with `aws ec2 create-instance-connect-endpoint --subnet-id "
            f"{path.endpoint.subnet_id} --security-group-ids <sg-id> --region {path.region}`",
        )
    for group_id in path.endpoint.security_group_ids:
        for perm in path.groups[group_id].get("IpPermissionsEgress", []) or []:
            if not _covers_port(perm, port):
                continue
            for pair in _pairs(perm):
                if pair in path.instance.security_group_ids:
                    return ok(name, f"endpoint SG {group_id} allows outbound {port} to {pair}")
            for cidr in _cidrs(perm):
                if target is not None and target.subnet_of(cidr):
                    return ok(name, f"endpoint SG {group_id} allows outbound {port} to {cidr}")
    group_id = path.endpoint.security_group_ids[0]
    to = path.instance.security_group_ids[0] if path.instance.security_group_ids else None
    destination = f"UserIdGroupPairs=[{{GroupId={to}}}]" if to else f"IpRanges=[{{CidrIp={target}}}]"
    return failure(
        name,
        f"endpoint SG {group_id} has no outbound {port} to the instance "
        f"({path.instance.private_ip or 'no private IP'})",
        f"aws ec2 authorize-security-group-egress --group-id {group_id} --ip-permissions "
        f"'IpProtocol=tcp,FromPort={port},ToPort={port},{destination}' --region {path.region}",
    )


def _inside_vpc(cidr: IPv4Network, vpc_cidrs: Sequence[IPv4Network]) -> bool:
    return any(cidr.subnet_of(v) for v in vpc_cidrs)


def instance_ingress(path: Path) -> Check:
    """The instance's security groups accept the port from the endpoint (or the clients)."""
    name, port = "instance-sg-ingress", path.port
    preserve = path.endpoint.preserve_client_ip
    source = path.endpoint_source
    known = [g for g in path.instance.security_group_ids if g in path.groups]
    for group_id in known:
        for perm in path.groups[group_id].get("IpPermissions", []) or []:
            if not _covers_port(perm, port):
                continue
            if not preserve:
                for pair in _pairs(perm):
                    if pair in path.endpoint.security_group_ids:
                        return ok(
                            name,
                            f"instance SG {group_id} allows inbound {port} from endpoint SG {pair}",
                        )
            for cidr in _cidrs(perm):
                if preserve and not _inside_vpc(cidr, path.vpc_cidrs):
                    return ok(
                        name,
                        f"instance SG {group_id} allows inbound {port} from {cidr} "
                        "(client addresses; client IP preservation is on)",
                    )
                if not preserve and source is not None and source.subnet_of(cidr):
                    return ok(name, f"instance SG {group_id} allows inbound {port} from {cidr}")
    if not known:
        return failure(name, f"instance {path.instance.instance_id} has no security group found")
    group_id = known[0]
    if preserve:
        return failure(
            name,
            f"instance SG {group_id} has no inbound {port} from client addresses "
            "(client IP preservation is on, so the endpoint's address is not what arrives)",
            f"aws ec2 authorize-security-group-ingress --group-id {group_id} --protocol tcp "
            f"--port {port} --cidr <client-cidr> --region {path.region}",
        )
    sg = path.endpoint.security_group_ids[0] if path.endpoint.security_group_ids else None
    origin = f"--source-group {sg}" if sg else f"--cidr {source}"
    return failure(
        name,
        f"instance SG {group_id} has no inbound {port} from the endpoint",
        f"aws ec2 authorize-security-group-ingress --group-id {group_id} --protocol tcp "
        f"--port {port} {origin} --region {path.region}",
    )


@dataclass(frozen=True)
class AclVerdict:
    allowed: bool
    rule_number: int | None = None  # the rule that denied, or None when allowed


def _subtract(ranges: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if b < lo or a > hi:
            out.append((a, b))
            continue
        if a < lo:
            out.append((a, lo - 1))
        if b > hi:
            out.append((hi + 1, b))
    return out


def evaluate_acl(
    entries: Iterable[dict[str, Any]], *, egress: bool, peer: IPv4Network, ports: tuple[int, int]
) -> AclVerdict:
    """Walk the rules in number order: every port of `ports` to/from all of `peer` must be
    allowed before any rule denies part of it; what no rule allows hits the default deny."""
    rules = sorted(
        (e for e in entries if bool(e.get("Egress")) == egress and e.get("CidrBlock")),
        key=lambda e: int(e.get("RuleNumber", DEFAULT_RULE)),
    )
    remaining = [ports]
    for rule in rules:
        protocol = str(rule.get("Protocol", ""))
        if protocol not in TCP:
            continue
        net = _net(rule.get("CidrBlock"))
        if net is None or not net.overlaps(peer):
            continue
        if protocol == "-1":
            lo, hi = 0, 65535
        else:
            span = rule.get("PortRange") or {}
            lo, hi = int(span.get("From", 0)), int(span.get("To", 65535))
        if not any(a <= hi and b >= lo for a, b in remaining):
            continue
        number = int(rule.get("RuleNumber", DEFAULT_RULE))
        if rule.get("RuleAction") == "deny":
            return AclVerdict(False, number)
        if peer.subnet_of(net):
            remaining = _subtract(remaining, lo, hi)
            if not remaining:
                return AclVerdict(True)
    return AclVerdict(False, DEFAULT_RULE)


def _free_rule_number(entries: Sequence[dict[str, Any]], *, egress: bool, below: int) -> int:
    used = {int(e["RuleNumber"]) for e in entries if bool(e.get("Egress")) == egress}
    if below >= DEFAULT_RULE:
        highest = max((n for n in used if n < DEFAULT_RULE), default=0)
        return min(highest + 10, DEFAULT_RULE - 1)
    return next((n for n in range(below - 1, 0, -1) if n not in used), 1)


def _acl_for(acls: Sequence[dict[str, Any]], subnet_id: str) -> dict[str, Any] | None:
    for acl in acls:
        if any(a.get("SubnetId") == subnet_id for a in acl.get("Associations", []) or []):
            return acl
    return None


def subnet_acl(
    name: str,
    acls: Sequence[dict[str, Any]],
    subnet_id: str,
    *,
    request_egress: bool,
    peer: IPv4Network | None,
    port: int,
    region: str,
) -> Check:
    """A subnet's NACL passes the request on `port` one way and the replies back the other."""
    acl = _acl_for(acls, subnet_id)
    if acl is None or peer is None:
        return warning(name, f"could not read the network ACL of {subnet_id}")
    acl_id, entries = acl["NetworkAclId"], acl.get("Entries", []) or []
    legs = (
        (request_egress, (port, port), "request"),
        (not request_egress, EPHEMERAL, "replies"),
    )
    for egress, ports, leg in legs:
        verdict = evaluate_acl(entries, egress=egress, peer=peer, ports=ports)
        if verdict.allowed:
            continue
        direction = "outbound" if egress else "inbound"
        span = f"{ports[0]}" if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}"
        by = (
            "the default deny"
            if verdict.rule_number == DEFAULT_RULE
            else f"rule {verdict.rule_number} (deny)"
        )
        number = _free_rule_number(entries, egress=egress, below=verdict.rule_number or DEFAULT_RULE)
        return failure(
            name,
            f"NACL {acl_id} of {subnet_id} blocks {direction} tcp {span} "
            f"{'to' if egress else 'from'} {peer} ({leg}) by {by}",
            f"aws ec2 create-network-acl-entry --network-acl-id {acl_id} "
            f"{'--egress' if egress else '--ingress'} --rule-number {number} --protocol tcp "
            f"--port-range From={ports[0]},To={ports[1]} --cidr-block {peer} "
            f"--rule-action allow --region {region}",
        )
    return ok(name, f"NACL {acl_id} of {subnet_id} allows tcp {port} and its replies")


def network_acls(path: Path, acls: Sequence[dict[str, Any]]) -> list[Check]:
    """Both subnets' NACLs, or one line saying they do not apply (same subnet)."""
    instance, endpoint = path.instance, path.endpoint
    if instance.subnet_id == endpoint.subnet_id:
        shared = f"endpoint and instance share {instance.subnet_id}: NACLs do not apply"
        return [ok("instance-subnet-nacl", shared), ok("endpoint-subnet-nacl", shared)]
    return [
        subnet_acl(
            "instance-subnet-nacl",
            acls,
            instance.subnet_id,
            request_egress=False,
            peer=path.endpoint_source,
            port=path.port,
            region=path.region,
        ),
        subnet_acl(
            "endpoint-subnet-nacl",
            acls,
            endpoint.subnet_id,
            request_egress=True,
            peer=path.instance_address,
            port=path.port,
            region=path.region,
        ),
    ]
