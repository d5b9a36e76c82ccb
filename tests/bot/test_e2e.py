"""The main path over real HTTP: command, card, N-of-M approval, IAM policy, DM, revoke."""

from __future__ import annotations

from access.access_requests.models import AccessRequest
from access.grants.models import Grant
from bot.actions import Action
from tests.bot.harness import APPROVALS, World, eventually


def test_request_approve_dm_and_revoke(any_world: World) -> None:
    w = any_world
    driver = w.driver
    web = w.estate.instance("web-1")

    ack = driver.command("U0ALICE", "request web-1 30m fixing disk")
    assert ack.status == 200
    assert ack.json and "Checking" in ack.json["text"]

    request: AccessRequest = eventually(
        lambda: w.request_row(requester_id="U0ALICE", instance_id=web.instance_id, status="pending")
    )
    card = eventually(lambda: w.card_for(request.id))
    assert card.channel == APPROVALS
    assert "web-1" in str(card.blocks) and "0 of 2" in str(card.blocks)

    driver.click("U0BOB", card, Action.APPROVE)
    eventually(lambda: "1 of 2" in str(w.slack.message(card.channel, card.ts).blocks))
    assert [p for p in w.policies("alice") if p.startswith("eice-grant-")] == []

    driver.click("U0CAROL", card, Action.APPROVE)
    grant: Grant = eventually(lambda: _grant_for(w, request.id))
    policy = f"eice-grant-{grant.id}"
    eventually(lambda: policy in w.policies("alice"))

    dm = eventually(lambda: [m for m in w.slack.dms("U0ALICE") if grant.id in str(m.blocks)])[0]
    body = str(dm.blocks)
    assert f"eice ssh {web.instance_id} --region {grant.region} --endpoint-id {grant.endpoint_id} " in body
    assert f"--private-ip {web.private_ip} --expires " in body
    assert "--connection-type eice --eice-options maxTunnelDuration=" in body
    assert f"open-tunnel --region {grant.region} --instance-id {web.instance_id}" in body
    assert f"--private-ip-address {web.private_ip} --remote-port 22 --local-port 2222" in body
    assert "<!date^" in body

    updated = eventually(
        lambda: (m := w.slack.message(card.channel, card.ts)) and "Approved" in str(m.blocks) and m
    )
    assert updated.ts == card.ts and updated.edited
    assert Action.APPROVE not in str(updated.blocks)  # buttons gone once decided
    assert "<@U0CAROL>" in str(updated.blocks)

    driver.click("U0ALICE", dm, Action.REVOKE, value=grant.id)
    eventually(lambda: policy not in w.policies("alice"))
    eventually(lambda: _grant_status(w, grant.id) == "revoked")
    thread = eventually(lambda: [m for m in w.slack.thread(card) if "revoked" in m.text])
    assert thread


def _grant_for(w: World, request_id: str) -> Grant | None:
    with w.rt.db.transaction() as s:
        return s.query(Grant).filter_by(request_id=request_id).first()


def _grant_status(w: World, grant_id: str) -> str | None:
    with w.rt.db.transaction() as s:
        g = s.get(Grant, grant_id)
        return g.status if g else None
