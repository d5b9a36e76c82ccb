"""The Web API methods the bot calls answer in Slack's shapes through a real slack_sdk client."""

from __future__ import annotations

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.slack.server import SlackSandbox

CARD = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*alice* wants i-0abc"}},
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "text": {"type": "plain_text", "text": "Approve"},
            }
        ],
    },
]


def test_auth_test_names_the_bot_and_team(client: WebClient) -> None:
    r = client.auth_test()
    assert r["ok"] and r["user_id"] == "U0EICEBOT" and r["team_id"] == "T0SANDBOX"
    assert r["bot_id"]


def test_unknown_token_is_invalid_auth_and_missing_token_is_not_authed(
    slack: SlackSandbox,
) -> None:
    wrong = WebClient(token="xoxb-wrong", base_url=slack.url + "/api/")
    with pytest.raises(SlackApiError) as e:
        wrong.auth_test()
    assert e.value.response["error"] == "invalid_auth"
    r = requests.post(slack.url + "/api/auth.test", timeout=5).json()
    assert r == {"ok": False, "error": "not_authed"}


def test_post_message_returns_channel_increasing_ts_and_message(
    client: WebClient, slack: SlackSandbox
) -> None:
    first = client.chat_postMessage(channel="C0APPROVALS", text="card", blocks=CARD)
    second = client.chat_postMessage(channel="C0APPROVALS", text="another")
    assert first["channel"] == "C0APPROVALS"
    assert float(second["ts"]) > float(first["ts"])
    assert first["message"]["blocks"][0]["type"] == "section"
    assert first["message"]["user"] == "U0EICEBOT"
    [card, other] = slack.messages("C0APPROVALS")
    assert (card.ts, card.text, other.text) == (first["ts"], "card", "another")
    assert card.blocks[1]["elements"][0]["action_id"] == "approve"


def test_form_encoded_post_is_accepted_like_json(slack: SlackSandbox) -> None:
    r = requests.post(
        slack.url + "/api/chat.postMessage",
        data={"token": slack.token, "channel": "C0X", "text": "hi", "blocks": "[]"},
        timeout=5,
    ).json()
    assert r["ok"] and slack.messages("C0X")[0].text == "hi"
    assert slack.calls[-1].params["channel"] == "C0X"


def test_post_message_to_a_user_id_lands_in_their_dm(client: WebClient, slack: SlackSandbox) -> None:
    r = client.chat_postMessage(channel="U0ALICE", text="your grant is live")
    opened = client.conversations_open(users=["U0ALICE"])
    assert r["channel"] == opened["channel"]["id"] and r["channel"].startswith("D")
    assert [m.text for m in slack.dms("U0ALICE")] == ["your grant is live"]
    assert client.conversations_open(users="U0ALICE")["channel"]["id"] == r["channel"]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_posting_errors_use_slacks_error_names(client: WebClient) -> None:
    for kwargs, error in [
        ({"channel": "nope", "text": "x"}, "channel_not_found"),
        ({"channel": "U0NOBODY", "text": "x"}, "channel_not_found"),
        ({"channel": "C0GENERAL"}, "no_text"),
        ({"channel": "C0GENERAL", "text": "x", "thread_ts": "1.000001"}, "thread_not_found"),
    ]:
        with pytest.raises(SlackApiError) as e:
            client.chat_postMessage(**kwargs)
        assert e.value.response["error"] == error


def test_thread_replies_are_recorded_under_their_parent(client: WebClient, slack: SlackSandbox) -> None:
    parent = client.chat_postMessage(channel="C0APPROVALS", text="card")
    client.chat_postMessage(channel="C0APPROVALS", text="grant applied", thread_ts=parent["ts"])
    [card] = [m for m in slack.messages("C0APPROVALS") if m.thread_ts is None]
    assert [m.text for m in slack.thread(card)] == ["grant applied"]


def test_update_replaces_content_and_keeps_history(client: WebClient, slack: SlackSandbox) -> None:
    posted = client.chat_postMessage(channel="C0APPROVALS", text="pending", blocks=CARD)
    r = client.chat_update(channel="C0APPROVALS", ts=posted["ts"], text="approved", blocks=[])
    assert r["ts"] == posted["ts"] and r["text"] == "approved"
    [msg] = slack.messages("C0APPROVALS")
    assert (msg.text, msg.blocks, msg.edited) == ("approved", [], True)
    assert msg.history[0]["text"] == "pending" and len(msg.history[0]["blocks"]) == 2


def test_update_without_blocks_keeps_the_blocks(client: WebClient, slack: SlackSandbox) -> None:
    posted = client.chat_postMessage(channel="C0APPROVALS", text="pending", blocks=CARD)
    client.chat_update(channel="C0APPROVALS", ts=posted["ts"], text="still pending")
    assert len(slack.messages("C0APPROVALS")[0].blocks) == 2


def test_update_of_an_unknown_message_is_message_not_found(client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C0APPROVALS", text="card")
    with pytest.raises(SlackApiError) as e:
        client.chat_update(channel="C0OTHER", ts=posted["ts"], text="x")
    assert e.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as e:
        client.chat_update(channel="U0ALICE", ts=posted["ts"], text="x")
    assert e.value.response["error"] == "channel_not_found"


def test_ephemeral_is_recorded_for_its_user_only(client: WebClient, slack: SlackSandbox) -> None:
    r = client.chat_postEphemeral(channel="C0GENERAL", user="U0ALICE", text="bad duration")
    assert r["message_ts"]
    assert [e["text"] for e in slack.ephemerals("U0ALICE")] == ["bad duration"]
    assert slack.ephemerals("U0BOB") == [] and slack.messages() == []
    with pytest.raises(SlackApiError) as e:
        client.chat_postEphemeral(channel="C0GENERAL", user="U0NOBODY", text="x")
    assert e.value.response["error"] == "user_not_found"


def test_views_publish_keeps_the_last_home_view(client: WebClient, slack: SlackSandbox) -> None:
    client.views_publish(user_id="U0ALICE", view={"type": "home", "blocks": []})
    r = client.views_publish(user_id="U0ALICE", view={"type": "home", "blocks": CARD})
    assert r["view"]["type"] == "home" and r["view"]["id"]
    view = slack.home_view("U0ALICE")
    assert view is not None and len(view["blocks"]) == 2
    assert slack.home_view("U0BOB") is None
    with pytest.raises(SlackApiError) as e:
        client.views_publish(user_id="U0ALICE", view={"type": "modal", "blocks": []})
    assert e.value.response["error"] == "invalid_arguments"


def test_users_info_and_lookup_by_email(client: WebClient) -> None:
    user = client.users_info(user="U0ALICE")["user"]
    assert user["profile"]["email"] == "alice@example.com"
    assert user["real_name"] and user["tz"]
    assert client.users_lookupByEmail(email="bob@example.com")["user"]["id"] == "U0BOB"
    with pytest.raises(SlackApiError) as e:
        client.users_info(user="U0NOBODY")
    assert e.value.response["error"] == "user_not_found"
    with pytest.raises(SlackApiError) as e:
        client.users_lookupByEmail(email="nobody@example.com")
    assert e.value.response["error"] == "users_not_found"


def test_usergroup_members(client: WebClient) -> None:
    assert client.usergroups_users_list(usergroup="S0ONCALL")["users"] == ["U0BOB", "U0CAROL"]
    with pytest.raises(SlackApiError):
        client.usergroups_users_list(usergroup="S0NONE")


def test_custom_users_and_groups() -> None:
    users = [{"id": "U1", "name": "eve", "email": "eve@corp.test", "tz": "Asia/Tokyo"}]
    with SlackSandbox(users=users, usergroups={"S1": ["U1"]}, token="xoxb-t") as sb:
        c = WebClient(token="xoxb-t", base_url=sb.url + "/api/")
        assert c.users_info(user="U1")["user"]["tz"] == "Asia/Tokyo"
        assert c.usergroups_users_list(usergroup="S1")["users"] == ["U1"]


def test_every_call_is_recorded_in_order(client: WebClient, slack: SlackSandbox) -> None:
    client.auth_test()
    client.chat_postMessage(channel="C0A", text="x")
    with pytest.raises(SlackApiError):
        client.users_info(user="U0NOBODY")
    assert [c.method for c in slack.calls] == ["auth.test", "chat.postMessage", "users.info"]
    assert slack.calls[1].params["text"] == "x" and slack.calls[1].status == 200
    assert slack.calls[2].response == {"ok": False, "error": "user_not_found"}
