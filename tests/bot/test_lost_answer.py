"""A card post that lands but whose answer is lost must not be posted again (found by
`eice chaos --scenario slack`): no WebClient retry, and the outbox looks for the card first.
"""

from __future__ import annotations

from tests.bot.harness import APPROVALS, World, eventually


def test_card_whose_post_answer_was_lost_is_not_posted_twice(world: World) -> None:
    db = world.estate.instance("db-1")
    world.slack.fail("chat.postMessage", timeout_s=1.0, after_effect=True, times=1)
    assert world.driver.command("U0ALICE", "request db-1 15m lost answer").status == 200
    request = eventually(lambda: world.request_row(requester_id="U0ALICE", instance_id=db.instance_id))
    # The outbox retries the failed delivery; it must adopt the card that already landed.
    stored = eventually(lambda: (r := world.request_row(id=request.id)) and r.card_ts and r, timeout=30)
    cards = [
        m for m in world.slack.messages(APPROVALS) if m.thread_ts is None and request.id in str(m.blocks)
    ]
    assert [c.ts for c in cards] == [stored.card_ts]
    assert world.slack.calls_to("conversations.history"), "the retry should have looked for the card"
