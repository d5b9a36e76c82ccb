"""Why a tunnel could not be opened or ended badly; each message is one line for a person."""

from __future__ import annotations

from access.errors import AccessError


class TunnelError(AccessError):
    """A tunnel problem the person should hear about in one line."""


class TunnelRefused(TunnelError):
    """The endpoint refused the WebSocket handshake (HTTP status + EICE error body)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"OpenTunnel refused: HTTP {status} {code}: {message}{suffix}")
        self.status = status
        self.code = code
        self.request_id = request_id


class TunnelClosed(TunnelError):
    """The endpoint closed the tunnel with a code other than 1000."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"tunnel closed by the endpoint: {code} {reason or '(no reason)'}")
        self.code = code
        self.reason = reason
