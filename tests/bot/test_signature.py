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
    started = world.log_path.read_text() if world.log_path else ""
    assert "will be unused" not in started  # Bolt's warning at every start, about the same token


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"payload=%7Bnot+json", "application/x-www-form-urlencoded"),
        (b"payload=null", "application/x-www-form-urlencoded"),
        (b"payload=%5B1%2C2%5D", "application/x-www-form-urlencoded"),
        (b"[1,2]", "application/json"),
        (b"{nope", "application/json"),
    ],
)
def test_a_malformed_body_from_anyone_is_401_without_a_traceback(
    world: World, body: bytes, ctype: str
) -> None:
    """Bolt reads a body before it checks the signature; unsigned garbage used to be a 500
    and a traceback in the log for each request anyone sent."""
    before = world.log_path.read_text() if world.log_path else ""
    for timestamp in ("", "abc", str(int(time.time()))):
        headers = {"Content-Type": ctype, "X-Slack-Request-Timestamp": timestamp}
        headers["X-Slack-Signature"] = "v0=00"
        assert world.driver.send_raw(body, headers).status == 401
    time.sleep(0.3)
    after = world.log_path.read_text() if world.log_path else ""
    assert "Traceback" not in after[len(before) :]


@pytest.mark.parametrize(
    "payload",
    [
        b"payload=%7Bnot+json",
        b"payload=null",
        b'payload={"type":"block_actions","actions":[]}',
        b'payload={"type":"block_actions","actions":[null]}',
        b'payload={"type":"block_actions","actions":"x"}',
        b'payload={"type":"block_actions","actions":[{}],"user":{"id":"U0BOB"}}',
    ],
)
def test_a_signed_payload_bolt_cannot_read_is_400_in_one_line(world: World, payload: bytes) -> None:
    before = world.log_path.read_text() if world.log_path else ""
    counts = (world.count("access_requests"), world.count("audit_events"))
    answer = world.driver.send_raw(payload, {**FORM, **world.driver.sign(payload)})
    assert answer.status in (400, 404)  # unreadable, or readable and matching no listener
    time.sleep(0.3)
    logged = (world.log_path.read_text() if world.log_path else "")[len(before) :]
    assert "Traceback" not in logged, logged[-2000:]
    assert (world.count("access_requests"), world.count("audit_events")) == counts
