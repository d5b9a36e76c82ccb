"""The requester's DMs over real HTTP: Extend, the reminder before expiry, denial and time-out."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from access.config.rules import Target, effective_rule
from access.durations import format_duration
from access.grants.models import Grant
from bot.actions import Action
from tests.bot.harness import World, eventually
from tests.bot.test_commands import dev_worker, live_grant, said


def grant_row(w: World, grant_id: str) -> Grant:
    with w.rt.db.transaction() as s:
        grant = s.get(Grant, grant_id)
        assert grant is not None
        return grant


def policy_document(w: World, role: str, grant_id: str) -> dict[str, Any]:
    doc = w.iam().get_role_policy(RoleName=role, PolicyName=f"eice-grant-{grant_id}")["PolicyDocument"]
    return doc if isinstance(doc, dict) else dict(json.loads(doc))


def time_windows(document: dict[str, Any]) -> set[str]:
    """Every `aws:CurrentTime` bound the policy carries."""
    found = set()
    for statement in document["Statement"]:
        for op in ("DateLessThan", "DateLessThanEquals"):
            value = statement.get("Condition", {}).get(op, {}).get("aws:CurrentTime")
            if value:
                found.add(str(value))
    return found


def dm_with(w: World, user: str, *fragments: str) -> list[Any]:
    return [m for m in w.slack.dms(user) if all(f in str(m.blocks) + m.text for f in fragments)]


def test_extend_button_extends_the_grant_everywhere(world: World) -> None:
    dev = dev_worker(world)
    world.driver.command("U0ALICE", f"request {dev.instance_id} 30m extend me")
    grant = eventually(lambda: live_grant(world, "U0ALICE", dev.instance_id))
    eventually(lambda: f"eice-grant-{grant.id}" in world.policies("alice"))
    before = policy_document(world, "alice", grant.id)
    dm = eventually(lambda: dm_with(world, "U0ALICE", grant.id, "is approved"))[0]
    request = world.request_row(id=grant.request_id)
    card = eventually(lambda: world.card_for(request.id))

    assert world.driver.click("U0ALICE", dm, Action.EXTEND, value=grant.id).status == 200

    extended = eventually(lambda: (g := grant_row(world, grant.id)).expires_at > grant.expires_at and g)
    assert extended.expires_at - grant.expires_at == timedelta(minutes=30)
    assert extended.status == "active" and extended.extensions == 1
    after = eventually(lambda: (d := policy_document(world, "alice", grant.id)) != before and d)
    assert time_windows(after) != time_windows(before)
    assert max(time_windows(after)) > max(time_windows(before))
    eventually(lambda: [m for m in world.slack.thread(card) if f"Grant `{grant.id}` extended" in m.text])
    eventually(lambda: dm_with(world, "U0ALICE", grant.id, "is extended"))
    eventually(
        lambda: [e for e in world.slack.ephemerals("U0ALICE") if f"`{grant.id}` extended by 30m" in e["text"]]
    )


def test_someone_elses_extend_click_is_refused(world: World) -> None:
    dev = dev_worker(world)
    world.driver.command("U0ALICE", f"request {dev.instance_id} 30m not yours")
    grant = eventually(lambda: live_grant(world, "U0ALICE", dev.instance_id))
    dm = eventually(lambda: dm_with(world, "U0ALICE", grant.id, "is approved"))[0]
    seen = len(world.slack.ephemerals("U0DAVE"))
    world.driver.click("U0DAVE", dm, Action.EXTEND, value=grant.id)
    eventually(
        lambda: [
            e
            for e in world.slack.ephemerals("U0DAVE")[seen:]
            if "only the requester or an admin can extend" in e["text"]
        ]
    )
    assert grant_row(world, grant.id).expires_at == grant.expires_at
    assert grant_row(world, grant.id).extensions == 0


def test_reminder_comes_a_few_minutes_before_expiry(world: World) -> None:
    worker = dev_worker(world)
    world.driver.command("U0ALICE", f"request {worker.instance_id} 30m long one")
    long = eventually(lambda: live_grant(world, "U0ALICE", worker.instance_id))
    world.driver.command("U0CAROL", f"request {worker.instance_id} 4m short one")
    short = eventually(lambda: live_grant(world, "U0CAROL", worker.instance_id))

    [reminder] = eventually(lambda: dm_with(world, "U0CAROL", ":alarm_clock:", short.instance_id))
    assert f"<!date^{int(short.expires_at.timestamp())}^" in reminder.text
    assert grant_row(world, short.id).reminded_at is not None
    # the reminder carries the grant's own buttons
    world.driver.click("U0CAROL", reminder, Action.REVOKE, value=short.id)
    eventually(lambda: grant_row(world, short.id).status == "revoked")
    # 30 minutes out is not "a few minutes before expiry"
    assert dm_with(world, "U0ALICE", ":alarm_clock:", long.instance_id) == []
    assert grant_row(world, long.id).reminded_at is None


def test_denial_is_told_to_the_requester(world: World) -> None:
    db = world.estate.instance("db-1")
    world.driver.command("U0ALICE", "request db-1 15m please")
    request = eventually(
        lambda: world.request_row(requester_id="U0ALICE", instance_id=db.instance_id, status="pending")
    )
    card = eventually(lambda: world.card_for(request.id))
    world.driver.click("U0BOB", card, Action.DENY)
    [dm] = eventually(lambda: dm_with(world, "U0ALICE", request.id, "was denied"))
    assert "by <@U0BOB>" in dm.text and db.instance_id in str(dm.blocks)
    eventually(lambda: "Denied" in str(world.slack.message(card.channel, card.ts).blocks))
    assert world.request_row(id=request.id).status == "denied"


def test_time_out_is_told_to_the_requester(world: World) -> None:
    worker = next(i for i in world.estate.instances if i.name == "worker" and i.env == "prod")
    world.driver.command("U0CAROL", f"request {worker.instance_id} 15m nobody answers")
    request = eventually(lambda: world.request_row(requester_id="U0CAROL", instance_id=worker.instance_id))
    [dm] = eventually(lambda: dm_with(world, "U0CAROL", request.id, "timed out"), timeout=10)
    assert worker.instance_id in str(dm.blocks)
    assert world.request_row(id=request.id).status == "expired"


def test_extend_command_keeps_the_grant_within_the_rules_maximum(world: World) -> None:
    dev = dev_worker(world)
    world.driver.command("U0ALICE", f"request {dev.instance_id} 30m extend by command")
    grant = eventually(lambda: live_grant(world, "U0ALICE", dev.instance_id))
    asked = world.request_row(id=grant.request_id)
    assert asked is not None
    rule = effective_rule(world.rt.config, Target(asked.instance_tags, grant.region, grant.account_id))
    too_much = format_duration(rule.max_duration)  # on top of the 30 minutes held already

    seen = len(world.slack.ephemerals("U0ALICE"))
    world.driver.command("U0ALICE", f"extend {grant.id} {too_much}")
    [answer] = eventually(lambda: said(world, "U0ALICE", "in all; the rule allows", after=seen))
    room = format_duration(rule.max_duration - timedelta(minutes=30))
    assert f"so at most {room} more" in answer["text"]
    assert grant_row(world, grant.id).expires_at == grant.expires_at  # nothing changed
    assert world.request_row(extends_grant_id=grant.id) is None

    world.driver.command("U0ALICE", f"extend {grant.id} {room}")  # exactly up to the maximum
    extended = eventually(lambda: (g := grant_row(world, grant.id)).expires_at > grant.expires_at and g)
    assert extended.expires_at - extended.starts_at == rule.max_duration


def test_two_extensions_asked_at_once_cannot_together_pass_the_rules_maximum(world: World) -> None:
    db = world.estate.instance("db-1")  # the db rule: one approval (bob's) per request
    world.driver.command("U0ALICE", "request db-1 30m two extensions")
    asked = eventually(
        lambda: world.request_row(requester_id="U0ALICE", instance_id=db.instance_id, status="pending")
    )
    world.driver.click("U0BOB", eventually(lambda: world.card_for(asked.id)), Action.APPROVE, value=asked.id)
    grant = eventually(lambda: live_grant(world, "U0ALICE", db.instance_id))
    rule = effective_rule(world.rt.config, Target(asked.instance_tags, grant.region, grant.account_id))
    room = format_duration(rule.max_duration - (grant.expires_at - grant.starts_at))

    for _ in range(2):  # each fits alone when asked for
        world.driver.command("U0ALICE", f"extend {grant.id} {room}")

    def extensions() -> list[Any]:
        with world.rt.db.transaction() as s:
            from access.access_requests.models import AccessRequest

            rows = s.query(AccessRequest).filter_by(extends_grant_id=grant.id, status="pending").all()
            return rows if len(rows) == 2 else []

    first, second = eventually(extensions)
    for request in (first, second):
        card = eventually(lambda r=request: world.card_for(r.id))
        world.driver.click("U0BOB", card, Action.APPROVE, value=request.id)
    eventually(lambda: said(world, "U0BOB", "the rule allows"))
    extended = grant_row(world, grant.id)
    assert extended.expires_at - extended.starts_at == rule.max_duration  # the first, not both
    assert extended.extensions == 1
    assert world.request_row(id=second.id).status == "pending"  # left for bob to deny
    world.cleanup()
