"""The OpenTunnel WebSocket stand-in: what an EC2 Instance Connect Endpoint does for a client.

Verifies the presigned URL, authorises `ec2-instance-connect:OpenTunnel` against the
caller's IAM policies, enforces 20 tunnels per endpoint and `maxTunnelDuration`, records
CloudTrail events, and proxies raw bytes to the loopback port standing in for the
instance (`sandbox.targets`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sandbox.aws.events import cloudtrail_record
from sandbox.aws.iam_eval import evaluate
from sandbox.aws.identity import Principal, cloudtrail_user_identity, identity_policies
from sandbox.aws.sigv4 import Refusal, verify_presigned_url

log = logging.getLogger(__name__)

SERVICE = "ec2-instance-connect"
EVENT_SOURCE = "ec2-instance-connect.amazonaws.com"
USABLE_STATES = frozenset({"create-complete", "update-in-progress", "update-complete", "update-failed"})
TUNNELS_PER_ENDPOINT = 20
MAX_TUNNEL_DURATION_S = 3600
READ_SIZE = 65000  # bytes per frame towards the client, as EICE clients expect
MAX_FRAME = 2**20  # a bigger frame from a client closes that tunnel (1009)
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class TunnelPlan:
    """A tunnel that passed the handshake checks, waiting for its WebSocket handler."""

    endpoint_id: str
    target: tuple[str, int] | None
    max_duration_s: int


class TunnelServer:
    """The OpenTunnel endpoint on loopback, in its own thread and asyncio loop.

    Args:
        sandbox: the AwsSandbox whose identities, endpoints, targets and events it uses.
        host, port: where to listen (port 0 picks a free one).
        tls_dir: when given, serve `wss://` with a sandbox CA written to `tls_dir/ca.pem`.
    """

    def __init__(
        self, sandbox: Any, *, host: str = "127.0.0.1", port: int = 0, tls_dir: Path | None = None
    ) -> None:
        self.sandbox = sandbox
        self.host = host
        self.port = port
        self.tls_dir = tls_dir
        self.ca_path: Path | None = None
        self.tunnels_per_endpoint = TUNNELS_PER_ENDPOINT
        self._open: Counter[str] = Counter()
        self._plans: dict[uuid.UUID, TunnelPlan] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def scheme(self) -> str:
        return "wss" if self.tls_dir is not None else "ws"

    def open_tunnels(self, endpoint_id: str) -> int:
        """How many tunnels are open through an endpoint right now."""
        return self._open[endpoint_id]

    def start(self) -> TunnelServer:
        """Listen, then point the sandbox's endpoints at this server."""
        ssl_context = None
        if self.tls_dir is not None:
            ssl_context, self.ca_path = _server_context(Path(self.tls_dir), self.host)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main(ssl_context)), name="eice-tunnel", daemon=True
        )
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"tunnel server failed to start: {self._error}") from self._error
        self.sandbox.attach_tunnel_server(self.host, self.port, self.scheme)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _main(self, ssl_context: ssl.SSLContext | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server: Server = await serve(
                self._handle,
                self.host,
                self.port,
                ssl=ssl_context,
                process_request=self._process_request,
                compression=None,
                max_size=MAX_FRAME,
                ping_interval=None,
                write_limit=2**18,
                server_header="eice-sandbox",
            )
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close(close_connections=True)

    # --- the handshake --------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
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
        client_ip = str(connection.remote_address[0])
        audit = _Audit(self.sandbox, principal, region, params, client_ip, request, request_id)

        endpoint = self.sandbox.endpoints.get(endpoint_id)
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
            "aws:SecureTransport": "true" if self.tls_dir is not None else "false",
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
        if self._open[endpoint_id] >= self.tunnels_per_endpoint:
            return audit.refuse(
                Refusal(
                    429,
                    "ServiceQuotaExceededException",
                    f"The maximum number of concurrent connections ({self.tunnels_per_endpoint}) "
                    f"through {endpoint_id} has been reached",
                )
            )
        target = self.sandbox.targets.get((private_ip, remote_port))
        self._open[endpoint_id] += 1
        self._plans[connection.id] = TunnelPlan(endpoint_id, target, duration)
        asyncio.get_running_loop().create_task(self._release(connection, endpoint_id))
        audit.allow()
        return None

    async def _release(self, connection: ServerConnection, endpoint_id: str) -> None:
        # Frees the slot however the connection ends, even if the upgrade itself fails.
        await connection.wait_closed()
        self._open[endpoint_id] -= 1
        self._plans.pop(connection.id, None)

    # --- the tunnel -----------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        plan = self._plans.get(ws.id)
        if plan is None or plan.target is None:
            await ws.close(1011, "Unable to connect to target")
            return
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*plan.target, limit=2**18), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError, ValueError):
            await ws.close(1011, "Unable to connect to target")
            return
        upstream = asyncio.create_task(_client_to_target(ws, writer))
        downstream = asyncio.create_task(_target_to_client(reader, ws))
        try:
            done, _ = await asyncio.wait(
                {upstream, downstream},
                timeout=plan.max_duration_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                await ws.close(1000, "Maximum tunnel duration reached")
            elif downstream in done:
                # Target EOF: the client gets a clean close once queued bytes are out.
                await ws.close(1000)
        finally:
            for task in (upstream, downstream):
                task.cancel()
            await asyncio.gather(upstream, downstream, return_exceptions=True)
            writer.close()


async def _client_to_target(ws: ServerConnection, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            message = await ws.recv()
            if isinstance(message, str):
                await ws.close(1003, "Text frames are not supported")
                return
            writer.write(message)
            if writer.transport.get_write_buffer_size() > 2**18:
                await writer.drain()
    except ConnectionClosed:
        pass
    except OSError:
        await ws.close(1011, "Connection to target lost")


async def _target_to_client(reader: asyncio.StreamReader, ws: ServerConnection) -> None:
    try:
        while chunk := await reader.read(READ_SIZE):
            await ws.send(chunk)
    except (ConnectionClosed, OSError):
        pass


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


def _server_context(tls_dir: Path, host: str) -> tuple[ssl.SSLContext, Path]:
    """A sandbox CA and a server certificate for `host`/localhost; the CA lands in ca.pem."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    tls_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eice-access sandbox CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    if host != "127.0.0.1":
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = tls_dir / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = tls_dir / "server.pem"
    chain.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    chain.chmod(0o600)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return context, ca_path
