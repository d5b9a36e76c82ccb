"""Presigned OpenTunnel URLs, signed by botocore exactly as the AWS CLI signs them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from botocore.auth import SIGV4_TIMESTAMP, SigV4QueryAuth
from botocore.awsrequest import AWSRequest

from access.clock import as_utc

SERVICE = "ec2-instance-connect"
URL_EXPIRES_S = 60


class _AtTimeQueryAuth(SigV4QueryAuth):
    """botocore's query signer with the signing time given rather than read from the clock."""

    def __init__(self, credentials: Any, service: str, region: str, expires: int, at: datetime):
        super().__init__(credentials, service, region, expires=expires)
        self._at = at

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = as_utc(self._at).strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)  # type: ignore[attr-defined]
        canonical_request = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical_request)
        signature = self.signature(string_to_sign, request)
        self._inject_signature_to_request(request, signature)  # type: ignore[attr-defined]


def open_tunnel_params(
    endpoint_id: str, remote_port: int, private_ip: str, max_tunnel_duration: int | None
) -> list[tuple[str, str]]:
    """The operation parameters, in the order the service documents them."""
    params = [
        ("instanceConnectEndpointId", endpoint_id),
        ("remotePort", str(remote_port)),
        ("privateIpAddress", private_ip),
    ]
    if max_tunnel_duration is not None:
        params.append(("maxTunnelDuration", str(max_tunnel_duration)))
    return params


def presign_open_tunnel_url(
    *,
    credentials: Any,
    region: str,
    dns_name: str,
    endpoint_id: str,
    remote_port: int,
    private_ip: str,
    max_tunnel_duration: int | None,
    scheme: str = "wss",
    now: datetime | None = None,
) -> str:
    """A `wss://<dns>/openTunnel?...` URL valid for 60 s.

    Args:
        credentials: botocore credentials (frozen or refreshable) with access/secret/token.
        region: the endpoint's region (goes into the credential scope).
        dns_name: the endpoint's `DnsName`; signed as the `host` header, so it must be
            exactly what the WebSocket client sends as Host.
        endpoint_id, remote_port, private_ip, max_tunnel_duration: the tunnel asked for.
        scheme: `wss` (AWS) or `ws` (the plain-text sandbox).
        now: signing time; the wall clock when None.
    """
    if hasattr(credentials, "get_frozen_credentials"):
        credentials = credentials.get_frozen_credentials()
    query = urlencode(open_tunnel_params(endpoint_id, remote_port, private_ip, max_tunnel_duration))
    request = AWSRequest(
        method="GET", url=f"{scheme}://{dns_name}/openTunnel?{query}", headers={"host": dns_name}
    )
    if now is None:
        signer = SigV4QueryAuth(credentials, SERVICE, region, expires=URL_EXPIRES_S)
    else:
        signer = _AtTimeQueryAuth(credentials, SERVICE, region, URL_EXPIRES_S, now)
    signer.add_auth(request)
    return str(request.url)
