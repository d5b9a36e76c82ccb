"""The driver signs like Slack and a real Bolt app receives its commands, clicks and events."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from werkzeug.serving import make_server

from sandbox.slack.driver import ButtonNotFound, SlackDriver
from sandbox.slack.server import SlackSandbox

SECRET = "sandbox-signing-secret"


def _approval_card(requester: str, grant: str) -> list[dict[str, Any]]:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"<@{requester}> asks for access"}},
        {
            "type": "actions",
            "block_id": "decision",
            "elements": [
                {
                    "type": "button",
                    "action_id": "approve",
                    "value": grant,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Approve"},
                },
                {
                    "type": "button",
                    "action_id": "deny",
                    "value": grant,
                    "text": {"type": "plain_text", "text": "Deny"},
                },
            ],
        },
    ]


def _register(app: App, seen: list[dict[str, Any]]) -> None:
    @app.command("/eice")
    def on_command(ack: Ack, command: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        seen.append({"kind": "command", **command})
        client.chat_postMessage(
            channel="C0APPROVALS", text="request", blocks=_approval_card(command["user_id"], "g1")
        )
        respond(text="Request sent to the approvers")

    @app.action("approve")
    def on_approve(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        seen.append({"kind": "approve", **body})
        client.chat_update(
            channel=body["container"]["channel_id"],
            ts=body["container"]["message_ts"],
            text=f"Approved by <@{body['user']['id']}>",
            blocks=[],
        )

    @app.event("app_home_opened")
    def on_home(event: dict[str, Any], client: WebClient) -> None:
        seen.append({"kind": "home", **event})
        client.views_publish(
            user_id=event["user"],
            view={"type": "home", "blocks": _approval_card(event["user"], "g7")},
        )

    @app.action("deny")
    def on_deny(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        seen.append({"kind": "deny", **body})


@pytest.fixture
def bolt(slack: SlackSandbox) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A tiny real Bolt app over HTTP on a free port; yields its events URL and what it saw."""
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    client = WebClient(token=slack.token, base_url=slack.url + "/api/")
    app = App(signing_secret=SECRET, client=client, process_before_response=True)
    seen: list[dict[str, Any]] = []
    _register(app, seen)
    server = make_server("127.0.0.1", 0, SlackRequestHandler(app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/slack/events", seen
    server.shutdown()


@pytest.fixture
def driver(slack: SlackSandbox, bolt: tuple[str, list]) -> Iterator[SlackDriver]:
    d = SlackDriver(bot_url=bolt[0], signing_secret=SECRET, slack=slack)
    yield d
    d.close()


def test_signature_verifies_with_slack_sdk(slack: SlackSandbox) -> None:
    d = SlackDriver(bot_url="http://127.0.0.1:9/", signing_secret=SECRET, slack=slack)
    body = b"token=x&text=hello"
    headers = d.sign(body)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert not verifier.is_valid(
        body + b"x", headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )
    old = d.sign(body, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid(body, old["X-Slack-Request-Timestamp"], old["X-Slack-Signature"])


def test_command_reaches_bolt_with_slacks_fields(
    driver: SlackDriver, slack: SlackSandbox, bolt: tuple[str, list]
) -> None:
    r = driver.command("U0ALICE", "request i-0abc 30m disk alarm")
    assert r.status == 200 and r.elapsed_ms > 0
    [command] = [s for s in bolt[1] if s["kind"] == "command"]
    assert command["user_id"] == "U0ALICE" and command["user_name"] == "alice"
    assert command["text"] == "request i-0abc 30m disk alarm"
    assert command["channel_name"] == "general" and command["trigger_id"]
    assert command["response_url"].startswith(slack.url)
    assert [m.text for m in slack.messages("C0APPROVALS")] == ["request"]
    assert [e["text"] for e in slack.ephemerals("U0ALICE")] == ["Request sent to the approvers"]


def test_click_runs_the_action_which_updates_the_card(
    driver: SlackDriver, slack: SlackSandbox, bolt: tuple[str, list]
) -> None:
    driver.command("U0ALICE", "request i-0abc 30m")
    [card] = slack.messages("C0APPROVALS")
    r = driver.click("U0BOB", card, "approve")
    assert r.status == 200
    [body] = [s for s in bolt[1] if s["kind"] == "approve"]
    assert body["type"] == "block_actions" and body["user"]["id"] == "U0BOB"
    assert body["container"] == {
        "type": "message",
        "message_ts": card.ts,
        "channel_id": "C0APPROVALS",
        "is_ephemeral": False,
    }
    assert body["message"]["ts"] == card.ts and body["message"]["blocks"] == card.blocks
    [action] = body["actions"]
    assert (action["action_id"], action["block_id"], action["value"]) == (
        "approve",
        "decision",
        "g1",
    )
    assert action["text"]["text"] == "Approve" and action["type"] == "button"
    [updated] = slack.messages("C0APPROVALS")
    assert updated.text == "Approved by <@U0BOB>" and updated.edited


def test_click_uses_the_current_blocks_so_a_decided_card_cannot_be_clicked(
    driver: SlackDriver, slack: SlackSandbox
) -> None:
    driver.command("U0ALICE", "request i-0abc 30m")
    [card] = slack.messages("C0APPROVALS")
    driver.click("U0BOB", card, "approve")
    with pytest.raises(ButtonNotFound, match="approve"):
        driver.click("U0CAROL", card, "approve")  # the stale snapshot still shows the button


def test_click_picks_a_button_by_value(driver: SlackDriver, slack: SlackSandbox) -> None:
    driver.command("U0ALICE", "request i-0abc 30m")
    [card] = slack.messages("C0APPROVALS")
    with pytest.raises(ButtonNotFound, match="g9"):
        driver.click("U0BOB", card, "deny", value="g9")
    assert driver.click("U0BOB", card, "deny", value="g1").status == 200


def test_open_home_and_click_home(driver: SlackDriver, slack: SlackSandbox, bolt: tuple[str, list]) -> None:
    r = driver.open_home("U0CAROL")
    assert r.status == 200
    assert [s["tab"] for s in bolt[1] if s["kind"] == "home"] == ["home"]
    assert slack.home_view("U0CAROL") is not None
    assert driver.click_home("U0CAROL", "deny", "g7").status == 200
    [body] = [s for s in bolt[1] if s["kind"] == "deny"]
    assert body["container"]["type"] == "view" and body["view"]["type"] == "home"
    assert body["actions"][0]["value"] == "g7"


def test_bolt_rejects_a_body_altered_after_signing(driver: SlackDriver, bolt: tuple[str, list]) -> None:
    body = b"command=%2Feice&text=list&user_id=U0ALICE"
    headers = {"Content-Type": "application/x-www-form-urlencoded", **driver.sign(body)}
    assert driver.send_raw(body.replace(b"list", b"help"), headers).status == 401
    stale = {**headers, **driver.sign(body, timestamp=int(time.time()) - 301)}
    assert driver.send_raw(body, stale).status == 401
    assert bolt[1] == []


def test_command_form_carries_every_slack_field(slack: SlackSandbox) -> None:
    sent: list[bytes] = []
    d = SlackDriver(bot_url="http://127.0.0.1:9/", signing_secret=SECRET, slack=slack)
    d.send_raw = lambda body, headers: sent.append(body)  # type: ignore[method-assign,assignment,return-value]
    d.command("U0DAVE", "list", channel_id="C0OPS")
    form = parse_qs(sent[0].decode())
    assert set(form) >= {
        "token", "team_id", "team_domain", "channel_id", "channel_name", "user_id",
        "user_name", "command", "text", "api_app_id", "response_url", "trigger_id",
    }  # fmt: skip


def test_click_on_an_ephemeral_message_says_so(
    driver: SlackDriver, slack: SlackSandbox, bolt: tuple[str, list]
) -> None:
    client = WebClient(token=slack.token, base_url=slack.url + "/api/")
    client.chat_postEphemeral(
        channel="C0GENERAL", user="U0ALICE", text="sure?", blocks=_approval_card("U0ALICE", "g2")
    )
    [eph] = slack.ephemerals("U0ALICE")
    assert driver.click("U0ALICE", eph, "deny").status == 200
    [body] = [s for s in bolt[1] if s["kind"] == "deny"]
    assert body["container"]["is_ephemeral"] is True and "message" not in body
    assert body["container"]["message_ts"] == eph["message_ts"]
