"""Slack's Socket Mode, locally: the WebSocket a bot opens with the URL that
`apps.connections.open` gives it, over which Slack sends envelopes (slash commands,
interactions, events) and the bot acknowledges each by its `envelope_id`.

As Slack does, the server greets each connection with a `hello` message and expects an
ack within 3 seconds; `send` delivers an envelope to the newest connection and returns the
bot's ack (with its `payload`, when the bot answered in the ack).
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

ACK_TIMEOUT_S = 3.0  # Slack's limit for acknowledging an envelope


class NoSocketConnection(RuntimeError):
    """No bot is connected over Socket Mode."""


class SocketModeServer:
    """One Socket Mode endpoint on 127.0.0.1 (a thread); `url` is what `apps.connections.open` returns."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.url = ""
        self.connections: list[ServerConnection] = []
        self._acks: dict[str, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        self._server: Server | None = None

    def start(self) -> SocketModeServer:
        self._server = serve(self._serve, self.host, 0)
        port = self._server.socket.getsockname()[1]
        self.url = f"ws://{self.host}:{port}/link/?ticket={uuid.uuid4().hex}&app_id=A0EICESANDBOX"
        threading.Thread(target=self._server.serve_forever, name="slack-socket-mode", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _serve(self, connection: ServerConnection) -> None:
        hello = {
            "type": "hello",
            "num_connections": len(self.connections) + 1,
            "connection_info": {"app_id": "A0EICESANDBOX"},
            "debug_info": {"host": "sandbox", "approximate_connection_time": 18060},
        }
        connection.send(json.dumps(hello))
        with self._arrived:
            self.connections.append(connection)
            self._arrived.notify_all()
        try:
            for message in connection:
                try:
                    ack = json.loads(message)
                except ValueError:
                    continue
                if isinstance(ack, dict) and isinstance(ack.get("envelope_id"), str):
                    with self._arrived:
                        self._acks[ack["envelope_id"]] = ack
                        self._arrived.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._arrived:
                self.connections.remove(connection)

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """Whether a bot is connected (waiting up to `timeout_s` for one)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: bool(self.connections), timeout_s)

    def send(
        self, envelope_type: str, payload: dict[str, Any], *, timeout_s: float = ACK_TIMEOUT_S
    ) -> dict[str, Any]:
        """Deliver an envelope to the newest connection; returns the bot's ack.

        Raises:
            NoSocketConnection: no bot is connected.
            TimeoutError: no ack within `timeout_s` (Slack would show the user an error).
        """
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": envelope_type != "events_api",
            "retry_attempt": 0,
            "retry_reason": "",
        }
        with self._arrived:
            if not self.connections:
                raise NoSocketConnection("no bot is connected over Socket Mode")
            connection = self.connections[-1]
        connection.send(json.dumps(envelope))
        with self._arrived:
            if not self._arrived.wait_for(lambda: envelope_id in self._acks, timeout_s):
                raise TimeoutError(f"no ack for {envelope_type} envelope {envelope_id} in {timeout_s} s")
            return self._acks.pop(envelope_id)
