"""Injected faults: rate limits with Retry-After, error bodies, 5xx, hangs, lost responses."""

from __future__ import annotations

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from sandbox.slack.server import SlackSandbox


def test_rate_limit_answers_429_with_retry_after_then_recovers(
    client: WebClient, slack: SlackSandbox
) -> None:
    slack.fail("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as e:
        client.chat_postMessage(channel="C0A", text="x")
    assert e.value.response.status_code == 429
    assert e.value.response.headers["Retry-After"] == "7"
    assert e.value.response["error"] == "ratelimited"
    assert slack.messages() == []
    assert client.chat_postMessage(channel="C0A", text="x")["ok"]
    assert [c.status for c in slack.calls] == [429, 200]


def test_slack_sdk_rate_limit_retry_handler_retries_and_succeeds(slack: SlackSandbox) -> None:
    client = WebClient(
        token=slack.token,
        base_url=slack.url + "/api/",
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    slack.fail("chat.postMessage", retry_after=0, times=2)
    assert client.chat_postMessage(channel="C0A", text="x")["ok"]
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [429, 429, 200]
    assert len(slack.messages()) == 1


def test_faults_apply_only_to_their_method_and_count(client: WebClient, slack: SlackSandbox) -> None:
    slack.fail("users.info", times=2, error="fatal_error")
    assert client.auth_test()["ok"]
    for _ in range(2):
        with pytest.raises(SlackApiError) as e:
            client.users_info(user="U0ALICE")
        assert e.value.response.status_code == 200
        assert e.value.response["error"] == "fatal_error"
    assert client.users_info(user="U0ALICE")["ok"]


def test_server_error_status(client: WebClient, slack: SlackSandbox) -> None:
    slack.fail("views.publish", status=503)
    with pytest.raises(SlackApiError) as e:
        client.views_publish(user_id="U0ALICE", view={"type": "home", "blocks": []})
    assert e.value.response.status_code == 503
    assert slack.home_view("U0ALICE") is None


def test_hang_drops_the_connection_after_the_timeout(slack: SlackSandbox) -> None:
    slack.fail("chat.postMessage", timeout_s=5)
    client = WebClient(token=slack.token, base_url=slack.url + "/api/", timeout=0.3)
    with pytest.raises(Exception) as e:
        client.chat_postMessage(channel="C0A", text="x")
    assert not isinstance(e.value, SlackApiError)
    assert slack.messages() == []


def test_after_effect_timeout_posts_the_message_but_loses_the_answer(
    slack: SlackSandbox,
) -> None:
    slack.fail("chat.postMessage", timeout_s=5, after_effect=True)
    client = WebClient(token=slack.token, base_url=slack.url + "/api/", timeout=0.3)
    with pytest.raises(Exception):  # noqa: B017 - any client-side timeout error
        client.chat_postMessage(channel="C0A", text="x")
    assert [m.text for m in slack.messages()] == ["x"]


def test_after_effect_rate_limit_makes_a_naive_retry_post_twice(slack: SlackSandbox) -> None:
    client = WebClient(
        token=slack.token,
        base_url=slack.url + "/api/",
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.fail("chat.postMessage", retry_after=0, after_effect=True)
    client.chat_postMessage(channel="C0A", text="card")
    assert [m.text for m in slack.messages()] == ["card", "card"]


def test_response_url_posts_can_fail_too(slack: SlackSandbox) -> None:
    url = slack.response_url_for(user_id="U0ALICE", channel_id="C0GENERAL")
    slack.fail("response_url", status=500)
    assert requests.post(url, json={"text": "x"}, timeout=5).status_code == 500
    assert requests.post(url, json={"text": "x"}, timeout=5).status_code == 200
    assert len(slack.ephemerals("U0ALICE")) == 1
