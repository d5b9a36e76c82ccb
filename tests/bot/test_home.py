"""App Home over real HTTP: `app_home_opened` publishes my grants, my requests, what waits on me."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from access.grants.models import Grant
from bot.actions import Action
from tests.bot.harness import World, eventually
from tests.bot.test_commands import dev_worker, live_grant


def published_after(w: World, user: str, count: int) -> dict[str, Any] | None:
    """The user's Home view once more than `count` views.publish calls were recorded for them."""
    calls = [c for c in w.slack.calls_to("views.publish") if c.params.get("user_id") == user]
    if len(calls) <= count or calls[-1].status != 200:
        return None
    return w.slack.home_view(user)


def publishes(w: World, user: str) -> int:
    return len([c for c in w.slack.calls_to("views.publish") if c.params.get("user_id") == user])


def buttons(view: dict[str, Any]) -> list[tuple[str, str]]:
    """(action_id, value) of every button in the view, in order."""
    found = []
    for block in view["blocks"]:
        elements = list(block.get("elements") or []) if block["type"] == "actions" else []
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        found += [(e["action_id"], e.get("value", "")) for e in elements if e.get("type") == "button"]
    return found


def open_home(w: World, user: str) -> dict[str, Any]:
    before = publishes(w, user)
    ack = w.driver.open_home(user)
    assert ack.status == 200
    return eventually(lambda: published_after(w, user, before))


def test_home_shows_grants_pending_requests_and_what_waits_on_me(world: World) -> None:
    dev = dev_worker(world)
    db = world.estate.instance("db-1")
    world.driver.command("U0ALICE", f"request {dev.instance_id} 30m home test")
    grant: Grant = eventually(lambda: live_grant(world, "U0ALICE", dev.instance_id))
    world.driver.command("U0ALICE", "request db-1 15m home test")
    request = eventually(
        lambda: world.request_row(requester_id="U0ALICE", instance_id=db.instance_id, status="pending")
    )

    view = open_home(world, "U0ALICE")
    assert view["type"] == "home"
    text = str(view["blocks"])
    assert f"`{grant.id}` `{dev.instance_id}`" in text
    assert f"`{request.id}` <@U0ALICE>" in text
    assert (Action.REVOKE, grant.id) in buttons(view)
    assert (Action.EXTEND, grant.id) in buttons(view)
    assert (Action.CANCEL, request.id) in buttons(view)
    assert (Action.APPROVE, request.id) not in buttons(view)  # not her own

    view = open_home(world, "U0BOB")
    assert (Action.APPROVE, request.id) in buttons(view)
    assert (Action.DENY, request.id) in buttons(view)
    assert grant.id not in str(view["blocks"])

    view = open_home(world, "U0DAVE")
    assert request.id not in str(view["blocks"])
    assert "_Nothing to approve._" in str(view["blocks"])


def test_approving_from_home_applies_the_grant_and_refreshes_the_view(world: World) -> None:
    db = world.estate.instance("db-1")
    world.driver.command("U0ALICE", "request db-1 15m approve from home")
    request = eventually(
        lambda: world.request_row(requester_id="U0ALICE", instance_id=db.instance_id, status="pending")
    )
    open_home(world, "U0BOB")
    before = publishes(world, "U0BOB")
    assert world.driver.click_home("U0BOB", Action.APPROVE, request.id).status == 200
    grant: Grant = eventually(lambda: live_grant(world, "U0ALICE", db.instance_id))
    eventually(lambda: f"eice-grant-{grant.id}" in world.policies("alice"))
    view = eventually(lambda: published_after(world, "U0BOB", before))
    assert (Action.APPROVE, request.id) not in buttons(view)


def test_revoking_and_cancelling_from_home(world: World) -> None:
    dev = dev_worker(world)
    db = world.estate.instance("db-1")
    world.driver.command("U0ALICE", f"request {dev.instance_id} 30m revoke from home")
    grant: Grant = eventually(lambda: live_grant(world, "U0ALICE", dev.instance_id))
    eventually(lambda: f"eice-grant-{grant.id}" in world.policies("alice"))
    world.driver.command("U0ALICE", "request db-1 15m cancel from home")
    request = eventually(
        lambda: world.request_row(requester_id="U0ALICE", instance_id=db.instance_id, status="pending")
    )
    open_home(world, "U0ALICE")

    before = publishes(world, "U0ALICE")
    world.driver.click_home("U0ALICE", Action.REVOKE, grant.id)
    eventually(lambda: f"eice-grant-{grant.id}" not in world.policies("alice"))
    view = eventually(lambda: published_after(world, "U0ALICE", before))
    assert (Action.REVOKE, grant.id) not in buttons(view)

    before = publishes(world, "U0ALICE")
    world.driver.click_home("U0ALICE", Action.CANCEL, request.id)
    eventually(lambda: world.request_row(id=request.id).status == "cancelled")
    view = eventually(lambda: published_after(world, "U0ALICE", before))
    assert request.id not in str(view["blocks"])


def test_extending_from_home_moves_the_expiry_shown(world: World) -> None:
    dev = dev_worker(world)
    world.driver.command("U0ALICE", f"request {dev.instance_id} 20m extend from home")
    grant: Grant = eventually(lambda: live_grant(world, "U0ALICE", dev.instance_id))
    open_home(world, "U0ALICE")
    before = publishes(world, "U0ALICE")
    world.driver.click_home("U0ALICE", Action.EXTEND, grant.id)
    view = eventually(lambda: published_after(world, "U0ALICE", before))
    later = eventually(
        lambda: (g := live_grant(world, "U0ALICE", dev.instance_id)) and g.expires_at > grant.expires_at and g
    )
    assert later.id == grant.id
    assert later.expires_at - grant.expires_at == timedelta(minutes=20)  # the original length, under 30m
    assert f"<!date^{int(later.expires_at.timestamp())}^" in str(view["blocks"])


def test_a_home_click_says_what_was_done_when_the_view_cannot_be_redrawn(world: World) -> None:
    dev = dev_worker(world)
    world.driver.command("U0ALICE", f"request {dev.instance_id} 30m revoke while home is down")
    grant: Grant = eventually(lambda: live_grant(world, "U0ALICE", dev.instance_id))
    eventually(lambda: f"eice-grant-{grant.id}" in world.policies("alice"))
    open_home(world, "U0ALICE")
    world.slack.fail("views.publish", status=200, error="ratelimited", times=5)
    world.driver.click_home("U0ALICE", Action.REVOKE, grant.id)
    eventually(lambda: f"eice-grant-{grant.id}" not in world.policies("alice"))
    told = eventually(lambda: [m.text for m in world.slack.dms("U0ALICE") if "revoked" in m.text.lower()])
    assert told
    assert not [m.text for m in world.slack.dms("U0ALICE") if "went wrong" in m.text]


def home_click(w: World, user: str, action_id: str, value: str) -> int:
    """A correctly signed App Home click that no view of ours need have shown; its HTTP status."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0SANDBOX"},
        "container": {"type": "view", "view_id": "V0"},
        "trigger_id": "1.2.3",
        "team": {"id": "T0SANDBOX"},
        "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "value": value}],
    }
    return w.driver._post_payload(payload).status


def test_a_click_whose_value_is_no_id_of_ours_is_answered_and_changes_nothing(world: World) -> None:
    open_home(world, "U0ALICE")
    counts = (world.count("access_requests"), world.count("audit_events"), world.count("grants"))
    for value in ("", "r-\x00x", "{'id': 'r-6wqfmswdtv'}", "g-" + "x" * 5000):
        assert home_click(world, "U0ALICE", str(Action.REVOKE), value) == 200
    said = eventually(lambda: [m.text for m in world.slack.dms("U0ALICE") if "carries no request" in m.text])
    eventually(lambda: len([m for m in world.slack.dms("U0ALICE") if "carries no request" in m.text]) == 4)
    assert said
    assert (world.count("access_requests"), world.count("audit_events"), world.count("grants")) == counts


def test_a_click_on_a_button_no_longer_in_use_is_answered(world: World) -> None:
    open_home(world, "U0ALICE")
    assert home_click(world, "U0ALICE", "eice_renamed_long_ago", "x") == 200  # was 404, and nobody told
    eventually(lambda: [m.text for m in world.slack.dms("U0ALICE") if "no longer in use" in m.text])
