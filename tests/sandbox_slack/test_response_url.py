"""response_url: ephemeral or in-channel replies, replace/delete original, Slack's limits."""

from __future__ import annotations

import requests
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from sandbox.slack.server import SlackSandbox


def test_command_reply_is_ephemeral_by_default(slack: SlackSandbox) -> None:
    url = slack.response_url_for(user_id="U0ALICE", channel_id="C0GENERAL")
    r = WebhookClient(url).send(text="Unknown instance i-0nope")
    assert (r.status_code, r.body) == (200, "ok")
    [e] = slack.ephemerals("U0ALICE")
    assert (e["channel"], e["text"], e["source"]) == (
        "C0GENERAL",
        "Unknown instance i-0nope",
        "response_url",
    )
    assert slack.messages() == []


def test_in_channel_reply_posts_a_message(slack: SlackSandbox) -> None:
    url = slack.response_url_for(user_id="U0ALICE", channel_id="C0GENERAL")
    WebhookClient(url).send(text="requested", response_type="in_channel")
    assert [m.text for m in slack.messages("C0GENERAL")] == ["requested"]


def test_replace_original_updates_the_clicked_message(client: WebClient, slack: SlackSandbox) -> None:
    posted = client.chat_postMessage(channel="C0APPROVALS", text="pending")
    url = slack.response_url_for(user_id="U0BOB", channel_id="C0APPROVALS", message_ts=posted["ts"])
    WebhookClient(url).send(text="approved by bob", replace_original=True)
    [msg] = slack.messages("C0APPROVALS")
    assert (msg.text, msg.ts, msg.edited) == ("approved by bob", posted["ts"], True)


def test_delete_original_removes_the_message(client: WebClient, slack: SlackSandbox) -> None:
    posted = client.chat_postMessage(channel="C0APPROVALS", text="pending")
    url = slack.response_url_for(user_id="U0BOB", channel_id="C0APPROVALS", message_ts=posted["ts"])
    WebhookClient(url).send_dict({"delete_original": True})
    assert slack.messages("C0APPROVALS") == []


def test_a_response_url_works_five_times_only(slack: SlackSandbox) -> None:
    url = slack.response_url_for(user_id="U0ALICE", channel_id="C0GENERAL")
    statuses = [requests.post(url, json={"text": str(i)}, timeout=5) for i in range(6)]
    assert [r.status_code for r in statuses] == [200] * 5 + [404]
    assert statuses[-1].text == "used_url"
    assert len(slack.ephemerals("U0ALICE")) == 5


def test_a_response_url_expires_after_thirty_minutes() -> None:
    now = [1_732_800_000.0]
    with SlackSandbox(clock=lambda: now[0]) as slack:
        url = slack.response_url_for(user_id="U0ALICE", channel_id="C0GENERAL")
        assert requests.post(url, json={"text": "a"}, timeout=5).status_code == 200
        now[0] += 30 * 60 + 1
        r = requests.post(url, json={"text": "b"}, timeout=5)
        assert (r.status_code, r.text) == (404, "expired_url")


def test_an_unknown_response_url_is_404(slack: SlackSandbox) -> None:
    r = requests.post(slack.url + "/response/T0SANDBOX/nope", json={"text": "x"}, timeout=5)
    assert r.status_code == 404


def test_response_url_posts_are_recorded_as_calls(slack: SlackSandbox) -> None:
    url = slack.response_url_for(user_id="U0ALICE", channel_id="C0GENERAL")
    requests.post(url, json={"text": "hello"}, timeout=5)
    [call] = slack.calls_to("response_url")
    assert call.params["text"] == "hello" and call.status == 200
