"""Requests Slack did not sign are refused with 401 and change nothing."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest

from tests.bot.harness import World


def _body(user: str = "U0ALICE", text: str = "request dev-box 10m sig") -> bytes:
    return urlencode(
        {
            "command": "/eice",
            "text": text,
            "user_id": user,
            "channel_id": "C0GENERAL",
            "team_id": "T0SANDBOX",
            "response_url": "http://127.0.0.1:9/none",
            "trigger_id": "1.2.3",
        }
    ).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    "tamper",
    ["wrong_signature", "missing_headers", "body_altered", "stale_timestamp", "future_timestamp"],
)
def test_unsigned_requests_get_401_and_change_nothing(world: World, tamper: str) -> None:
    driver = world.driver
    body = _body()
    before = (world.count("access_requests"), world.count("audit_events"))
    if tamper == "wrong_signature":
        headers = {**FORM, **driver.sign(body), "X-Slack-Signature": "v0=" + "0" * 64}
    elif tamper == "missing_headers":
        headers = dict(FORM)
    elif tamper == "body_altered":
        headers = {**FORM, **driver.sign(body)}
        body = _body(text="request dev-box 4h sig")
    elif tamper == "stale_timestamp":
        headers = {**FORM, **driver.sign(body, timestamp=int(time.time()) - 301)}
    else:
        headers = {**FORM, **driver.sign(body, timestamp=int(time.time()) + 301)}
    answer = driver.send_raw(body, headers)
    assert answer.status == 401
    time.sleep(0.3)
    assert (world.count("access_requests"), world.count("audit_events")) == before


def test_healthz_and_metrics(world: World) -> None:
    import requests

    assert world.driver.command("U0ALICE", "help").status == 200
    health = requests.get(world.url + "/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["db"] == "ok" and health.json()["scheduler"] == "running"
    assert health.json()["last_reaper_pass"]
    metrics = requests.get(world.url + "/metrics", timeout=5).text
    for name in (
        "eice_slack_requests_total",
        "eice_ack_seconds_bucket",
        "eice_outbox_backlog",
        "eice_revocation_lag_seconds",
        "eice_requests_unfinished",
        "eice_requests_replayed_total",
    ):
        assert name in metrics
    assert 'eice_slack_requests_total{kind="command",status="200"}' in metrics
