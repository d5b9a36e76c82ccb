"""The OpenTunnel handshake: who is asking, may they, and what EICE answers if not.

Checks the operation parameters and the SigV4 presigned URL, evaluates the caller's IAM
policies for `ec2-instance-connect:OpenTunnel` (once per connection, never per frame),
enforces the per-endpoint tunnel quota and records the attempt as a CloudTrail event.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from sandbox.aws.events import cloudtrail_record
from sandbox.aws.iam_eval import evaluate
from sandbox.aws.identity import Principal, cloudtrail_user_identity, identity_policies
from sandbox.aws.sigv4 import Refusal, verify_presigned_url

SERVICE = "ec2-instance-connect"
EVENT_SOURCE = "ec2-instance-connect.amazonaws.com"
USABLE_STATES = frozenset({"create-complete", "update-in-progress", "update-complete", "update-failed"})
MAX_TUNNEL_DURATION_S = 3600


@dataclass(frozen=True)
class TunnelPlan:
    """A tunnel that passed the handshake checks, waiting for its WebSocket handler."""

    endpoint_id: str
    target: tuple[str, int] | None
    max_duration_s: int


def authorise_open_tunnel(
    sandbox: Any,
    request: Request,
    client_ip: str,
    *,
    secure: bool,
    open_now: Callable[[str], int],
    limit: int,
) -> TunnelPlan | Response:
    """The plan for an allowed tunnel, or the HTTP error EICE would answer with.

    Args:
        sandbox: the AwsSandbox with the identities, endpoints, targets and events.
        request: the WebSocket upgrade request.
        client_ip: the caller's address (`aws:SourceIp`).
        secure: whether the request came over TLS (`aws:SecureTransport`).
        open_now: how many tunnels an endpoint has open right now.
        limit: tunnels allowed at once per endpoint.
    """
    request_id = str(uuid.uuid4())
    parts = urlsplit(request.path)
    if parts.path != "/openTunnel":
        return _error(Refusal(404, "NotFound", "Unknown path."), request_id)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    checked = _operation(params)
    if isinstance(checked, Refusal):
        return _error(checked, request_id)
    endpoint_id, remote_port, private_ip, duration = checked
    verified = verify_presigned_url(
        path_and_query=request.path, host=request.headers.get("Host", ""), service=SERVICE
    )
    if isinstance(verified, Refusal):
        return _error(verified, request_id)
    principal, region = verified
    audit = _Audit(sandbox, principal, region, params, client_ip, request, request_id)

    endpoint = sandbox.endpoints.get(endpoint_id)
    if endpoint is not None and endpoint.region != region:
        # Real endpoints answer on a regional DNS name: another region cannot sign for it.
        message = f"Credential should be scoped to a valid region, not '{region}'."
        return _error(Refusal(403, "InvalidSignature", message), request_id)
    if endpoint is None:
        return audit.refuse(
            Refusal(
                400,
                "InvalidInstanceConnectEndpointId.NotFound",
                f"The instance connect endpoint '{endpoint_id}' does not exist",
            )
        )
    audit.endpoint_arn = endpoint.arn
    if endpoint.state not in USABLE_STATES:
        return audit.refuse(Refusal(409, "IncorrectState", f"Endpoint {endpoint_id} is {endpoint.state}"))
    now = datetime.now(UTC)
    context: dict[str, str | list[str]] = {
        "ec2-instance-connect:remotePort": str(remote_port),
        "ec2-instance-connect:privateIpAddress": private_ip,
        "ec2-instance-connect:maxTunnelDuration": str(duration),
        "aws:CurrentTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aws:EpochTime": str(int(now.timestamp())),
        "aws:SourceIp": client_ip,
        "aws:username": principal.name if principal.kind == "IAMUser" else "",
        "aws:PrincipalArn": principal.role_arn or principal.arn,
        "aws:userid": principal.principal_id,
        "aws:SecureTransport": "true" if secure else "false",
        "aws:RequestedRegion": region,
        **{f"aws:ResourceTag/{k}": v for k, v in endpoint.tags.items()},
    }
    if principal.kind != "IAMUser":
        context.pop("aws:username")
    decision = evaluate(
        identity_policies(principal),
        action=f"{SERVICE}:OpenTunnel",
        resource=endpoint.arn,
        context=context,
    )
    if not decision.allowed:
        why = (
            "with an explicit deny in an identity-based policy"
            if decision.reason == "explicit-deny"
            else f"because no identity-based policy allows the {SERVICE}:OpenTunnel action"
        )
        return audit.refuse(
            Refusal(
                403,
                "AccessDeniedException",
                f"User: {principal.arn} is not authorized to perform: {SERVICE}:OpenTunnel on "
                f"resource: {endpoint.arn} {why}",
            )
        )
    if open_now(endpoint_id) >= limit:
        return audit.refuse(
            Refusal(
                429,
                "ServiceQuotaExceededException",
                f"The maximum number of concurrent connections ({limit}) "
                f"through {endpoint_id} has been reached",
            )
        )
    audit.allow()
    return TunnelPlan(endpoint_id, sandbox.targets.get((private_ip, remote_port)), duration)


def _operation(params: dict[str, str]) -> tuple[str, int, str, int] | Refusal:
    """The four operation parameters, validated the way the service validates them."""
    endpoint_id = params.get("instanceConnectEndpointId", "")
    if not endpoint_id.startswith("eice-"):
        return Refusal(400, "InvalidParameter", "instanceConnectEndpointId is missing or invalid.")
    try:
        port = int(params.get("remotePort", ""))
        ip = str(ipaddress.ip_address(params.get("privateIpAddress", "")))
        duration = int(params.get("maxTunnelDuration", str(MAX_TUNNEL_DURATION_S)))
    except ValueError:
        return Refusal(
            400, "InvalidParameter", "remotePort, privateIpAddress or maxTunnelDuration is invalid."
        )
    if not 1 <= port <= 65535:
        return Refusal(400, "InvalidParameter", "remotePort must be 1..65535.")
    if not 1 <= duration <= MAX_TUNNEL_DURATION_S:
        return Refusal(400, "InvalidParameter", f"maxTunnelDuration must be 1..{MAX_TUNNEL_DURATION_S}.")
    return endpoint_id, port, ip, duration


def _error(refusal: Refusal, request_id: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("x-amzn-requestid", request_id),
            ("Connection", "close"),
        ]
    )
    body = json.dumps(refusal.body()).encode()
    headers["Content-Length"] = str(len(body))
    return Response(refusal.status, HTTPStatus(refusal.status).phrase, headers, body)


class _Audit:
    """The CloudTrail record of one OpenTunnel attempt by a known principal."""

    def __init__(
        self,
        sandbox: Any,
        principal: Principal,
        region: str,
        params: dict[str, str],
        client_ip: str,
        request: Request,
        request_id: str,
    ) -> None:
        self.sandbox = sandbox
        self.principal = principal
        self.region = region
        self.client_ip = client_ip
        self.user_agent = request.headers.get("User-Agent", "")
        self.request_id = request_id
        names = ("instanceConnectEndpointId", "remotePort", "privateIpAddress", "maxTunnelDuration")
        self.parameters = {n: params[n] for n in names if n in params}
        endpoint_id = params.get("instanceConnectEndpointId", "")
        self.endpoint_arn = (
            f"arn:aws:ec2:{region}:{principal.account_id}:instance-connect-endpoint/{endpoint_id}"
        )

    def _record(self, refusal: Refusal | None) -> None:
        record = cloudtrail_record(
            event_source=EVENT_SOURCE,
            event_name="OpenTunnel",
            region=self.region,
            identity=cloudtrail_user_identity(self.principal),
            source_ip=self.client_ip,
            user_agent=self.user_agent,
            request_parameters=self.parameters,
            response_elements=None,
            resources=[{"type": "AWS::EC2::InstanceConnectEndpoint", "ARN": self.endpoint_arn}],
            error_code=refusal.code if refusal else None,
            error_message=refusal.message if refusal else None,
            request_id=self.request_id,
            account_id=self.principal.account_id,
        )
        self.sandbox.events.record(record)

    def allow(self) -> None:
        self._record(None)

    def refuse(self, refusal: Refusal) -> Response:
        self._record(refusal)
        return _error(refusal, self.request_id)
