"""Approval rules at click time: N of M, self-approval, non-approvers, time-outs, races."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import select

from access.audit.models import AuditEvent
from access.grants.models import Grant
from bot.actions import Action
from tests.bot.harness import World, eventually


def _ask(w: World, user: str, text: str, instance_id: str) -> tuple[Any, Any]:
    ack = w.driver.command(user, text)
    assert ack.status == 200, ack.body
    request = eventually(lambda: w.request_row(requester_id=user, instance_id=instance_id, status="pending"))
    return request, eventually(lambda: w.card_for(request.id))


def _stale(card: Any) -> dict[str, Any]:
    """The card as it was when the clicker loaded it (buttons still there)."""
    return {"channel": card.channel, "message_ts": card.ts, "blocks": card.blocks}


def _said(w: World, user: str, fragment: str) -> list[dict[str, Any]]:
    return [e for e in w.slack.ephemerals(user) if fragment in e["text"]]


def _grants(w: World, request_id: str) -> list[Grant]:
    with w.rt.db.transaction() as s:
        return list(s.scalars(select(Grant).where(Grant.request_id == request_id)))


def test_self_approval_is_refused_with_reason_and_audited(world: World) -> None:
    db = world.estate.instance("db-1")
    request, card = _ask(world, "U0ALICE", "request db-1 15m self", db.instance_id)
    world.driver.click("U0ALICE", card, Action.APPROVE)
    eventually(lambda: _said(world, "U0ALICE", "cannot approve your own request"))
    with world.rt.db.transaction() as s:
        refused = s.scalars(
            select(AuditEvent).where(
                AuditEvent.request_id == request.id, AuditEvent.kind == "approval.refused"
            )
        ).all()
        assert [r.actor for r in refused] == ["U0ALICE"]
    assert _grants(world, request.id) == []


def test_non_approver_click_is_refused(world: World) -> None:
    db = world.estate.instance("db-1")
    request, card = _ask(world, "U0ALICE", "request db-1 15m", db.instance_id)
    world.driver.click("U0DAVE", card, Action.APPROVE)
    eventually(lambda: _said(world, "U0DAVE", "not an approver"))
    assert world.request_row(id=request.id).status == "pending"


def test_click_after_approval_time_out_is_refused(world: World) -> None:
    worker = next(i for i in world.estate.instances if i.name == "worker" and i.env == "prod")
    request, card = _ask(world, "U0ALICE", f"request {worker.instance_id} 15m", worker.instance_id)
    eventually(lambda: world.request_row(id=request.id).status == "expired", timeout=10)
    world.driver.click("U0BOB", _stale(card), Action.APPROVE)
    eventually(lambda: _said(world, "U0BOB", "already expired"))
    assert _grants(world, request.id) == []
    eventually(lambda: [m for m in world.slack.dms("U0ALICE") if "timed out" in m.text])
    eventually(lambda: "Expired" in str(world.slack.message(card.channel, card.ts).blocks))


def test_repeated_click_gets_already_approved_by(world: World) -> None:
    db = world.estate.instance("db-1")
    request, card = _ask(world, "U0ALICE", "request db-1 15m", db.instance_id)
    world.driver.click("U0BOB", card, Action.APPROVE)
    eventually(lambda: _grants(world, request.id))
    world.driver.click("U0CAROL", _stale(card), Action.APPROVE)
    eventually(lambda: _said(world, "U0CAROL", "already approved by <@U0BOB>"))


def test_fifty_concurrent_approve_clicks_make_one_grant_and_one_put(world: World) -> None:
    db = world.estate.instance("db-1")
    request, card = _ask(world, "U0ALICE", "request db-1 15m race", db.instance_id)
    stale = _stale(card)
    before = {
        "U0BOB": len(world.slack.ephemerals("U0BOB")),
        "U0CAROL": len(world.slack.ephemerals("U0CAROL")),
    }
    start = threading.Barrier(50)
    statuses: list[int] = []

    def click(i: int) -> None:
        driver = world.driver
        start.wait()
        statuses.append(driver.click("U0BOB" if i % 2 else "U0CAROL", stale, Action.APPROVE).status)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 50
    eventually(
        lambda: sum(len(world.slack.ephemerals(u)) - n for u, n in before.items()) >= 50,
        timeout=30,
    )
    grants = _grants(world, request.id)
    assert len(grants) == 1
    name = f"eice-grant-{grants[0].id}"
    eventually(lambda: name in world.policies("alice"))
    time.sleep(0.5)
    puts = [
        e
        for e in world.aws.events.find(event_name="PutRolePolicy")
        if e.get("requestParameters", {}).get("policyName") == name
    ]
    assert len(puts) == 1
