"""EC2 Instance Connect Endpoints: the store and the three EC2 query actions moto lacks."""

from __future__ import annotations

import secrets
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from moto.ec2.models import ec2_backends

EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"
ENDPOINT_ACTIONS = frozenset(
    {
        "CreateInstanceConnectEndpoint",
        "DescribeInstanceConnectEndpoints",
        "DeleteInstanceConnectEndpoint",
    }
)
STATES = frozenset(
    {
        "create-in-progress",
        "create-complete",
        "create-failed",
        "delete-in-progress",
        "delete-complete",
        "delete-failed",
        "update-in-progress",
        "update-complete",
        "update-failed",
    }
)
# (unverified) the code AWS answers a second endpoint in a VPC with.
VPC_LIMIT_ERROR = "ResourceLimitExceeded"


class Ec2Error(Exception):
    """An EC2 error response (Code, Message)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class InstanceConnectEndpoint:
    """One endpoint as the sandbox keeps it."""

    id: str
    arn: str
    owner_id: str
    region: str
    subnet_id: str
    vpc_id: str
    availability_zone: str
    availability_zone_id: str
    security_group_ids: list[str]
    preserve_client_ip: bool
    network_interface_ids: list[str]
    dns_hash: str
    created_at: datetime
    client_token: str | None = None
    state: str = "create-complete"
    state_message: str = ""
    tags: dict[str, str] = field(default_factory=dict)


class EndpointStore:
    """Every endpoint the sandbox created; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, InstanceConnectEndpoint] = {}
        self.tunnel_address: str | None = None  # "host:port" once a tunnel server attached

    def add(self, endpoint: InstanceConnectEndpoint) -> None:
        with self._lock:
            self._endpoints[endpoint.id] = endpoint

    def get(self, endpoint_id: str) -> InstanceConnectEndpoint | None:
        """A copy of the endpoint, or None."""
        with self._lock:
            found = self._endpoints.get(endpoint_id)
            return replace(found) if found else None

    def all(self, region: str | None = None) -> list[InstanceConnectEndpoint]:
        with self._lock:
            found = [replace(e) for e in self._endpoints.values()]
        return [e for e in found if region is None or e.region == region]

    def remove(self, endpoint_id: str) -> None:
        with self._lock:
            self._endpoints.pop(endpoint_id, None)

    def set_state(self, endpoint_id: str, state: str, message: str = "") -> None:
        """Test hook: put an endpoint in any of the documented states."""
        if state not in STATES:
            raise ValueError(f"unknown endpoint state {state!r}")
        with self._lock:
            self._endpoints[endpoint_id].state = state
            self._endpoints[endpoint_id].state_message = message

    def clear(self) -> None:
        with self._lock:
            self._endpoints.clear()

    def dns_name(self, endpoint: InstanceConnectEndpoint) -> str:
        """Where clients reach it: the tunnel stand-in once attached, else an AWS-like name."""
        if self.tunnel_address:
            return self.tunnel_address
        return (
            f"{endpoint.id}.{endpoint.dns_hash}.ec2-instance-connect-endpoint.{endpoint.region}.amazonaws.com"
        )

    def fips_dns_name(self, endpoint: InstanceConnectEndpoint) -> str:
        if self.tunnel_address:
            return self.tunnel_address
        return (
            f"{endpoint.id}.{endpoint.dns_hash}.fips.ec2-instance-connect-endpoint."
            f"{endpoint.region}.amazonaws.com"
        )


Params = dict[str, list[str]]


def _one(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _indexed(params: Params, prefix: str) -> list[str]:
    """Values of Prefix.1, Prefix.2, ... in index order."""
    found = []
    for key, values in params.items():
        rest = key[len(prefix) + 1 :] if key.startswith(prefix + ".") else ""
        if rest.isdigit():
            found.append((int(rest), values[0]))
    return [v for _, v in sorted(found)]


def _filters(params: Params) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for key in params:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "Filter" and parts[2] == "Name":
            name = params[key][0]
            filters.setdefault(name, []).extend(_indexed(params, f"Filter.{parts[1]}.Value"))
    return filters


def _tags_from_spec(params: Params) -> dict[str, str]:
    tags: dict[str, str] = {}
    for key in params:
        parts = key.split(".")
        if len(parts) == 5 and parts[0] == "TagSpecification" and parts[4] == "Key":
            value = _one(params, ".".join([*parts[:4], "Value"])) or ""
            tags[params[key][0]] = value
    return tags


def _matches(endpoint: InstanceConnectEndpoint, name: str, values: list[str]) -> bool:
    simple = {
        "instance-connect-endpoint-id": endpoint.id,
        "state": endpoint.state,
        "subnet-id": endpoint.subnet_id,
        "vpc-id": endpoint.vpc_id,
    }
    if name in simple:
        return simple[name] in values
    if name.startswith("tag:"):
        key = name[4:]
        return key in endpoint.tags and endpoint.tags[key] in values
    if name == "tag-key":
        return any(k in values for k in endpoint.tags)
    if name == "tag-value":
        return any(v in values for v in endpoint.tags.values())
    raise Ec2Error("InvalidParameterValue", f"The filter '{name}' is invalid")


def _xml_endpoint(store: EndpointStore, e: InstanceConnectEndpoint, tag: str) -> str:
    items = "".join
    created = e.created_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{e.created_at.microsecond // 1000:03d}Z"
    return (
        f"<{tag}>"
        f"<ownerId>{e.owner_id}</ownerId>"
        f"<instanceConnectEndpointId>{e.id}</instanceConnectEndpointId>"
        f"<instanceConnectEndpointArn>{e.arn}</instanceConnectEndpointArn>"
        f"<state>{e.state}</state>"
        f"<stateMessage>{escape(e.state_message)}</stateMessage>"
        f"<dnsName>{escape(store.dns_name(e))}</dnsName>"
        f"<fipsDnsName>{escape(store.fips_dns_name(e))}</fipsDnsName>"
        "<networkInterfaceIdSet>"
        f"{items(f'<item>{n}</item>' for n in e.network_interface_ids)}"
        "</networkInterfaceIdSet>"
        f"<vpcId>{e.vpc_id}</vpcId>"
        f"<availabilityZone>{e.availability_zone}</availabilityZone>"
        f"<availabilityZoneId>{e.availability_zone_id}</availabilityZoneId>"
        f"<createdAt>{created}</createdAt>"
        f"<subnetId>{e.subnet_id}</subnetId>"
        f"<preserveClientIp>{str(e.preserve_client_ip).lower()}</preserveClientIp>"
        "<securityGroupIdSet>"
        f"{items(f'<item>{g}</item>' for g in e.security_group_ids)}"
        "</securityGroupIdSet>"
        "<tagSet>"
        + items(f"<item><key>{escape(k)}</key><value>{escape(v)}</value></item>" for k, v in e.tags.items())
        + "</tagSet>"
        "<ipAddressType>ipv4</ipAddressType>"
        f"</{tag}>"
    )


def _response(action: str, inner: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{EC2_XMLNS}">'
        f"<requestId>{uuid.uuid4()}</requestId>{inner}</{action}Response>"
    ).encode()


def error_xml(error: Ec2Error) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>{error.code}</Code><Message>{escape(error.message)}</Message>"
        f"</Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


def _create(store: EndpointStore, params: Params, region: str, account_id: str) -> bytes:
    subnet_id = _one(params, "SubnetId")
    if not subnet_id:
        raise Ec2Error("MissingParameter", "The request must contain the parameter SubnetId")
    token = _one(params, "ClientToken")
    if token:
        for existing in store.all(region):
            if existing.client_token == token:
                return _response(
                    "CreateInstanceConnectEndpoint",
                    _xml_endpoint(store, existing, "instanceConnectEndpoint")
                    + f"<clientToken>{escape(token)}</clientToken>",
                )
    backend = ec2_backends[account_id][region]
    try:
        subnet = backend.get_subnet(subnet_id)
    except Exception as exc:
        raise Ec2Error("InvalidSubnetID.NotFound", f"The subnet ID '{subnet_id}' does not exist") from exc
    if any(e.vpc_id == subnet.vpc_id for e in store.all(region)):
        raise Ec2Error(
            VPC_LIMIT_ERROR,
            f"You've reached the limit of EC2 Instance Connect Endpoints for VPC {subnet.vpc_id}.",
        )
    groups = _indexed(params, "SecurityGroupId")
    for group_id in groups:
        group = backend.get_security_group_from_id(group_id)
        if group is None or group.vpc_id != subnet.vpc_id:
            raise Ec2Error("InvalidGroup.NotFound", f"The security group '{group_id}' does not exist")
    if not groups:
        default = backend.get_security_group_from_name("default", subnet.vpc_id)
        groups = [default.id] if default is not None else []
    endpoint_id = f"eice-{secrets.token_hex(9)[:17]}"
    endpoint = InstanceConnectEndpoint(
        id=endpoint_id,
        arn=f"arn:aws:ec2:{region}:{account_id}:instance-connect-endpoint/{endpoint_id}",
        owner_id=account_id,
        region=region,
        subnet_id=subnet.id,
        vpc_id=subnet.vpc_id,
        availability_zone=subnet.availability_zone,
        availability_zone_id=subnet.availability_zone_id,
        security_group_ids=groups,
        preserve_client_ip=(_one(params, "PreserveClientIp") or "false").lower() == "true",
        network_interface_ids=[f"eni-{secrets.token_hex(9)[:17]}"],
        dns_hash=secrets.token_hex(4),
        created_at=datetime.now(UTC),
        client_token=token,
        tags=_tags_from_spec(params),
    )
    store.add(endpoint)
    inner = _xml_endpoint(store, endpoint, "instanceConnectEndpoint")
    if token:
        inner += f"<clientToken>{escape(token)}</clientToken>"
    return _response("CreateInstanceConnectEndpoint", inner)


def _check_id(endpoint_id: str) -> None:
    if not endpoint_id.startswith("eice-"):
        raise Ec2Error(
            "InvalidInstanceConnectEndpointId.Malformed",
            f"Invalid id: '{endpoint_id}' (expecting 'eice-...')",
        )


def _not_found(endpoint_id: str) -> Ec2Error:
    return Ec2Error(
        "InvalidInstanceConnectEndpointId.NotFound",
        f"The instance connect endpoint ID '{endpoint_id}' does not exist",
    )


def _describe(store: EndpointStore, params: Params, region: str) -> bytes:
    raw_max = _one(params, "MaxResults")
    max_results = 50
    if raw_max is not None:
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= 50:
            raise Ec2Error(
                "InvalidParameterValue",
                f"Value ( {raw_max} ) for parameter maxResults is invalid. "
                "Expecting a value between 1 and 50.",
            )
        max_results = int(raw_max)
    found = sorted(store.all(region), key=lambda e: (e.created_at, e.id))
    ids = _indexed(params, "InstanceConnectEndpointId")
    for endpoint_id in ids:
        _check_id(endpoint_id)
        if not any(e.id == endpoint_id for e in found):
            raise _not_found(endpoint_id)
    if ids:
        found = [e for e in found if e.id in ids]
    for name, values in _filters(params).items():
        found = [e for e in found if _matches(e, name, values)]
    start = 0
    token = _one(params, "NextToken")
    if token:
        positions = [i for i, e in enumerate(found) if e.id == token]
        if not positions:
            raise Ec2Error("InvalidNextToken", "The specified token is invalid or has expired")
        start = positions[0]
    page = found[start : start + max_results]
    inner = (
        "<instanceConnectEndpointSet>"
        + "".join(_xml_endpoint(store, e, "item") for e in page)
        + "</instanceConnectEndpointSet>"
    )
    if start + max_results < len(found):
        inner += f"<nextToken>{found[start + max_results].id}</nextToken>"
    return _response("DescribeInstanceConnectEndpoints", inner)


def _delete(store: EndpointStore, params: Params, region: str) -> bytes:
    endpoint_id = _one(params, "InstanceConnectEndpointId") or ""
    _check_id(endpoint_id)
    endpoint = store.get(endpoint_id)
    if endpoint is None or endpoint.region != region:
        raise _not_found(endpoint_id)
    # AWS shows delete-in-progress, then forgets it; the sandbox forgets at once.
    store.remove(endpoint_id)
    endpoint.state = "delete-in-progress"
    return _response(
        "DeleteInstanceConnectEndpoint", _xml_endpoint(store, endpoint, "instanceConnectEndpoint")
    )


def handle_endpoint_action(
    store: EndpointStore, action: str, params: Params, region: str, account_id: str
) -> tuple[int, bytes]:
    """Answer one of ENDPOINT_ACTIONS: (HTTP status, XML body)."""
    try:
        if action == "CreateInstanceConnectEndpoint":
            return 200, _create(store, params, region, account_id)
        if action == "DescribeInstanceConnectEndpoints":
            return 200, _describe(store, params, region)
        return 200, _delete(store, params, region)
    except Ec2Error as error:
        return error.status, error_xml(error)
