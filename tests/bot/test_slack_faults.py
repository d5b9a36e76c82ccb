"""Slack answering 429: grants are applied and revoked on time anyway; messages follow the retry."""

from __future__ import annotations

from access.grants.models import Grant
from tests.bot.harness import APPROVALS, World, eventually


def test_rate_limited_slack_delays_messages_but_not_grants(world: World) -> None:
    dev = world.estate.instance("dev-box")
    world.slack.fail("chat.postMessage", status=429, retry_after=1, times=3)
    world.slack.fail("chat.update", status=429, retry_after=1, times=2)
    limited_before = len([c for c in world.slack.calls if c.status == 429])

    assert world.driver.command("U0ALICE", "request dev-box 5s rate limited").status == 200
    grant: Grant = eventually(lambda: _grant(world, dev.instance_id))
    name = f"eice-grant-{grant.id}"
    eventually(lambda: name in world.policies("alice"), timeout=5)
    eventually(lambda: name not in world.policies("alice"), timeout=10)
    revoked = eventually(lambda: (g := _grant(world, dev.instance_id, grant.id)) and g.revoked_at and g)
    assert (revoked.revoked_at - revoked.expires_at).total_seconds() < 3

    eventually(lambda: [m for m in world.slack.dms("U0ALICE") if grant.id in str(m.blocks)], timeout=15)
    eventually(
        lambda: [
            m for m in world.slack.messages(APPROVALS) if grant.id in str(m.blocks) or grant.id in m.text
        ],
        timeout=15,
    )
    assert len([c for c in world.slack.calls if c.status == 429]) - limited_before >= 3


def _grant(w: World, instance_id: str, grant_id: str | None = None) -> Grant | None:
    with w.rt.db.transaction() as s:
        q = s.query(Grant).filter_by(instance_id=instance_id, requester_id="U0ALICE")
        if grant_id:
            q = q.filter_by(id=grant_id)
        return q.order_by(Grant.created_at.desc()).first()
