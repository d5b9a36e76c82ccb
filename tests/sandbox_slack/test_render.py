"""The transcript and the HTML page show what happened, escaped."""

from __future__ import annotations

import requests
from slack_sdk import WebClient

from sandbox.slack.render import html, transcript
from sandbox.slack.server import SlackSandbox

CARD = [
    {"type": "header", "text": {"type": "plain_text", "text": "Access request"}},
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "<@U0ALICE> wants i-0abc <script>"},
        "fields": [{"type": "mrkdwn", "text": "*Port* 22"}],
    },
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "pre-flight ok"}]},
    {"type": "divider"},
    {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": "approve", "style": "primary",
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "deny", "text": {"type": "plain_text", "text": "Deny"}},
        ],
    },
]  # fmt: skip


def _conversation(client: WebClient, slack: SlackSandbox) -> None:
    card = client.chat_postMessage(channel="C0APPROVALS", text="pending", blocks=CARD)
    client.chat_postMessage(channel="C0APPROVALS", text="grant applied", thread_ts=card["ts"])
    client.chat_update(channel="C0APPROVALS", ts=card["ts"], text="approved by bob")
    client.chat_postMessage(channel="U0ALICE", text="ssh away")
    client.chat_postEphemeral(channel="C0GENERAL", user="U0DAVE", text="bad duration")
    client.views_publish(user_id="U0BOB", view={"type": "home", "blocks": CARD[:2]})


def test_transcript_shows_channels_dms_threads_buttons_and_edits(
    client: WebClient, slack: SlackSandbox
) -> None:
    _conversation(client, slack)
    text = transcript(slack)
    assert "== #eice-approvals (C0APPROVALS) ==" in text
    # As Slack shows it: the card's blocks (kept by the update), not its fallback text.
    assert "@eice: (edited 1x; first: 'pending')\n    Access request" in text
    assert "approved by bob" not in text
    assert "[Approve] [Deny]" in text
    assert "↳" in text and "grant applied" in text
    assert "== DM with @alice (D0ALICE) ==" in text and "ssh away" in text
    assert "ephemeral to @dave in #general" in text
    assert "App Home of @bob" in text


def test_html_is_escaped_and_renders_cards(client: WebClient, slack: SlackSandbox) -> None:
    _conversation(client, slack)
    page = html(slack)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert '<button class="btn primary" title="approve">Approve</button>' in page
    assert '<div class="thread">' in page and "(edited)" in page
    assert page == requests.get(slack.url + "/", timeout=5).text


def test_empty_sandbox_renders() -> None:
    slack = SlackSandbox()
    assert transcript(slack) == "\n"
    assert "<body></body>" in html(slack)
