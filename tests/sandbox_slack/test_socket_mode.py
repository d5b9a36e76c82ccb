"""The stand-in's Socket Mode: `apps.connections.open` takes only the app-level token, and a
Bolt app on slack_sdk's own Socket Mode client gets envelopes and acks them over the socket."""

from __future__ import annotations

import pytest
from slack_bolt import Ack, App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.slack.driver import SlackDriver
from sandbox.slack.server import DEFAULT_TOKEN, SlackSandbox
from sandbox.slack.socket_mode import NoSocketConnection


def test_connections_open_wants_the_app_level_token(slack: SlackSandbox) -> None:
    web = WebClient(base_url=slack.url + "/api/")
    assert web.apps_connections_open(app_token=slack.app_token)["url"] == slack.socket.url
    for token, error in ((DEFAULT_TOKEN, "not_allowed_token_type"), ("xapp-1-wrong", "invalid_auth")):
        with pytest.raises(SlackApiError) as refused:
            web.apps_connections_open(app_token=token)
        assert refused.value.response["error"] == error


def test_a_bolt_app_in_socket_mode_gets_a_command_and_acks_it(slack: SlackSandbox) -> None:
    driver = SlackDriver(bot_url="http://127.0.0.1:9/", signing_secret="unused over a socket", slack=slack)
    with pytest.raises(NoSocketConnection):
        driver.command_over_socket("U0ALICE", "before anyone connected")
    app = App(
        client=WebClient(base_url=slack.url + "/api/", token=DEFAULT_TOKEN),
        token_verification_enabled=False,
    )
    seen: list[dict[str, str]] = []

    @app.command("/eice")
    def answer(ack: Ack, command: dict[str, str]) -> None:
        seen.append(command)
        ack(f"got {command['text']}")

    handler = SocketModeHandler(app, slack.app_token)
    handler.connect()
    try:
        assert slack.socket.wait_connected(10)
        ack = driver.command_over_socket("U0ALICE", "hello there")
        assert ack["payload"] == {"text": "got hello there"}
        assert [(c["user_id"], c["text"], c["command"]) for c in seen] == [
            ("U0ALICE", "hello there", "/eice")
        ]
    finally:
        handler.close()
