"""Issue 5: `/eice audit` answers page by page; Previous/Next work and refuse tampered values."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bot.actions import AuditAction
from bot.audit_blocks import PAGE_SIZE, AuditQuery, audit_page_blocks, parse_audit_args, parse_page_value
from tests.bot.harness import World, eventually
from tests.bot.test_commands import acts_of, live_grant

GRANTS = PAGE_SIZE + 2


def audit_answers(w: World, user: str) -> list[dict[str, Any]]:
    """Every audit page shown to `user`, oldest first (a replaced page is a new entry)."""
    return [
        e
        for e in w.slack.ephemerals(user)
        if e["blocks"] and e["blocks"][0].get("text", {}).get("text", "").startswith("Audit:")
    ]


def grant_ids(answer: dict[str, Any]) -> list[str]:
    """The grant IDs on a page, in the order shown."""
    ids = []
    for block in answer["blocks"]:
        if block["type"] == "section":
            ids += re.findall(r"^\*(g-[a-z0-9]+)\*", block["text"]["text"])
    return ids


def page_buttons(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{action_id: JSON value} of the page's navigation buttons."""
    return {
        e["action_id"]: json.loads(e["value"])
        for b in answer["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    }


def with_next_value(answer: dict[str, Any], value: str) -> dict[str, Any]:
    """The page as a tampering client would send it: the Next button's value replaced."""
    forged = copy.deepcopy(answer)
    for block in forged["blocks"]:
        for element in block.get("elements") or []:
            if element.get("action_id") == AuditAction.NEXT:
                element["value"] = value
    return forged


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> World:
    """Each backend's bot in turn (the pages are LIMIT/OFFSET queries, which each database runs)."""
    w: World = request.getfixturevalue(f"{request.param}_world")
    return w


@pytest.fixture
def world(backend: World) -> Iterator[World]:
    yield backend
    backend.cleanup()


@pytest.fixture(scope="module")
def carols_grants(backend: World) -> list[str]:
    """GRANTS grants for carol on the dev worker (auto-approved), each revoked again; oldest first."""
    w = backend
    worker = next(i for i in w.estate.instances if i.name == "worker" and i.env == "dev")
    made = []
    for n in range(GRANTS):
        # Grants are listed newest first by `created_at`, which each process takes from its
        # own clock anchored on AWS's whole-second Date header: two processes (the server's
        # lazy thread, a command worker) can be up to a second apart. Grants made closer
        # together than that may list in either order, so the fixture spaces them out.
        time.sleep(1.1)
        w.driver.command("U0CAROL", f"request {worker.instance_id} 30m audit page test {n}")
        grant = eventually(lambda: live_grant(w, "U0CAROL", worker.instance_id))
        w.driver.command("U0CAROL", f"revoke {grant.id}")
        eventually(lambda g=grant: _status(w, g.id) == "revoked")
        made.append(grant.id)
    return made


def _status(w: World, grant_id: str) -> str:
    from access.grants.models import Grant

    with w.rt.db.transaction() as s:
        grant = s.get(Grant, grant_id)
        return grant.status if grant else ""


def test_pages_forward_and_back(world: World, carols_grants: list[str]) -> None:
    shown_before = len(audit_answers(world, "U0CAROL"))
    ack = world.driver.command("U0CAROL", "audit <@U0CAROL|carol> --since 1d")
    assert ack.json is not None and "Searching the audit trail" in ack.json["text"]
    first = eventually(lambda: audit_answers(world, "U0CAROL")[shown_before:])[0]
    assert first["blocks"][0]["text"]["text"] == "Audit: <@U0CAROL>, last 1d"
    newest_first = list(reversed(carols_grants))
    assert grant_ids(first) == newest_first[:PAGE_SIZE]
    assert page_buttons(first) == {AuditAction.NEXT: {"q": "<@U0CAROL> --since 1d", "page": 1}}

    pages = [first]
    while AuditAction.NEXT in page_buttons(pages[-1]):
        count = len(audit_answers(world, "U0CAROL"))
        assert world.driver.click("U0CAROL", pages[-1], AuditAction.NEXT).status == 200
        page = eventually(lambda n=count: audit_answers(world, "U0CAROL")[n:])[0]
        assert page["replace_original"] is True
        pages.append(page)
        assert len(pages) < 20
    second = pages[1]
    assert grant_ids(second)[: GRANTS - PAGE_SIZE] == newest_first[PAGE_SIZE:]
    assert AuditAction.PREVIOUS in page_buttons(second)
    everything = [g for p in pages for g in grant_ids(p)]
    assert len(everything) == len(set(everything))  # no grant on two pages
    assert set(carols_grants) <= set(everything)
    assert "the last page" in str(pages[-1]["blocks"][1])

    count = len(audit_answers(world, "U0CAROL"))
    world.driver.click("U0CAROL", second, AuditAction.PREVIOUS)
    back = eventually(lambda: audit_answers(world, "U0CAROL")[count:])[0]
    assert grant_ids(back) == grant_ids(first)
    assert page_buttons(back) == page_buttons(first)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("page two please", "not one this bot made"),
        (json.dumps({"q": "<@U0CAROL>", "page": -1}), "out of range"),
        (json.dumps({"q": "<@U0CAROL>", "page": 10**9}), "out of range"),
        (json.dumps({"q": "<@U0CAROL>", "page": "1"}), "out of range"),
        (json.dumps({"q": "<@U0CAROL>", "page": True}), "out of range"),
        (json.dumps({"q": "<@U0CAROL>", "page": 1, "as": "U0ADMIN"}), "not one this bot made"),
        (json.dumps(["<@U0CAROL>", 1]), "not one this bot made"),
        (json.dumps({"q": "'; DROP TABLE grants; --", "page": 1}), "is not an instance ID"),
        (json.dumps({"q": "<@U0CAROL> --since 400d", "page": 1}), "at most 90d"),
        (json.dumps({"q": "x" * 5000, "page": 1}), "not one this bot made"),
    ],
)
def test_tampered_page_button_is_refused_and_changes_nothing(
    world: World, carols_grants: list[str], value: str, said: str
) -> None:
    shown_before = len(audit_answers(world, "U0CAROL"))
    world.driver.command("U0CAROL", "audit <@U0CAROL>")
    page = eventually(lambda: audit_answers(world, "U0CAROL")[shown_before:])[0]
    ephemerals = len(world.slack.ephemerals("U0CAROL"))
    rows = (world.count("grants"), acts_of(world, "U0CAROL"))

    ack = world.driver.click("U0CAROL", with_next_value(page, value), AuditAction.NEXT)
    assert ack.status == 200
    [answer] = eventually(lambda: world.slack.ephemerals("U0CAROL")[ephemerals:])
    assert answer["text"].startswith(":warning:") and said in answer["text"]
    assert answer["replace_original"] is False and answer["blocks"] == []
    assert len(audit_answers(world, "U0CAROL")) == shown_before + 1  # the page itself is untouched
    assert (world.count("grants"), acts_of(world, "U0CAROL")) == rows


def test_answer_comes_as_a_dm_where_it_cannot_be_ephemeral_and_pages_in_place(
    world: World, carols_grants: list[str]
) -> None:
    world.slack.fail("chat.postEphemeral", status=200, error="channel_not_found")
    dms_before = len(world.slack.dms("U0CAROL"))
    world.driver.command("U0CAROL", "audit <@U0CAROL>", channel_id="C0SOMEWHERE")
    dm = eventually(
        lambda: [m for m in world.slack.dms("U0CAROL")[dms_before:] if "Audit:" in str(m.blocks)]
    )[0]
    assert grant_ids(dm.as_slack()) == list(reversed(carols_grants))[:PAGE_SIZE]

    world.driver.click("U0CAROL", dm, AuditAction.NEXT)
    edited = eventually(lambda: (m := world.slack.message(dm.channel, dm.ts)) and m.edited and m)
    assert grant_ids(edited.as_slack())[: GRANTS - PAGE_SIZE] == list(reversed(carols_grants))[PAGE_SIZE:]
    assert AuditAction.PREVIOUS in page_buttons(edited.as_slack())


@pytest.mark.parametrize(
    "text", ["", "<@U0CAROL>", "i-0abc12345678 --since 90d", "g-k3v9q2m7xa --since 1h30m", "--since 2d"]
)
def test_page_value_round_trips_the_query(text: str) -> None:
    query = parse_audit_args(text)
    value = json.dumps({"q": query.as_text(), "page": 3})
    assert parse_page_value(value) == (query.as_text(), query, 3)
    assert parse_audit_args(query.as_text()) == query


def test_an_empty_later_page_offers_only_previous() -> None:
    blocks = audit_page_blocks([], 4, PAGE_SIZE, has_more=False, query=AuditQuery(), query_text="")
    assert "page 5: no grants this far back" in str(blocks[1])
    [nav] = [b for b in blocks if b["type"] == "actions"]
    assert [(e["action_id"], json.loads(e["value"])["page"]) for e in nav["elements"]] == [
        (AuditAction.PREVIOUS, 3)
    ]
