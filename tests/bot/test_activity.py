"""What CloudTrail shows reaches Slack: connection activity in the grant's thread, EICE use no
grant explains and refused attempts beside a grant in the audit channel, and the audit
chain's head posted there as a witness. Over real HTTP, from the outbox of a running bot."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from slack_sdk import WebClient

from access.audit.collector import chain_witness, collector_tick
from access.audit.service import chain_head
from access.cli.main import main
from access.scheduler.tick import due_this_tick
from bot.activity import connection_notice, out_of_band_notice
from bot.notify import Notifier
from tests.audit.conftest import Person, role_person, tunnel_record
from tests.bot.harness import AUDIT, DEV_AUDIT, World, eventually
from tests.bot.test_commands import dev_worker, live_grant

ROOT = Path(__file__).resolve().parents[2]


def person_for(w: World, role: str) -> Person:
    """A CloudTrail identity for the sandbox role `role` (the ARN the bot granted to)."""
    person = role_person(role)
    arn = w.estate.role_arns.get(role, person.principal_arn)
    person.identity["sessionContext"]["sessionIssuer"]["arn"] = arn
    return Person(role, arn, person.identity)


def audit_channel(w: World, *fragments: str, channel: str = AUDIT) -> list[str]:
    return [
        m.text
        for m in w.slack.messages(channel)
        if m.thread_ts is None and all(f in m.text for f in fragments)
    ]


def test_cloudtrail_activity_is_posted_where_people_look(world: World) -> None:
    dev = dev_worker(world)
    world.driver.command("U0ALICE", f"request {dev.instance_id} 30m activity")
    grant = eventually(lambda: live_grant(world, "U0ALICE", dev.instance_id))
    card = eventually(lambda: world.card_for(grant.request_id))
    alice, mallory = person_for(world, "alice"), person_for(world, "mallory")
    at = datetime.now(UTC).replace(microsecond=0)
    where = {"endpoint_id": grant.endpoint_id, "private_ip": grant.private_ip}
    world.aws.events.record(tunnel_record(alice, at=at, port=grant.port, **where))
    world.aws.events.record(tunnel_record(alice, at=at, port=3389, error_code="AccessDenied", **where))
    world.aws.events.record(tunnel_record(mallory, at=at, port=grant.port, **where))

    report = collector_tick(world.rt)
    assert (report["matched"], report["out_of_band"]) >= (2, 1)

    def thread_posts() -> list[str]:
        return [m.text for m in world.slack.thread(card) if "CloudTrail" in m.text]

    # Both of alice's calls came in one collector page: one post in the thread lists them.
    [post] = eventually(thread_posts)
    header, *lines = post.split("\n")
    assert header == f":electric_plug: 2 calls through EICE (grant `{grant.id}`, CloudTrail):"
    opened = f"{grant.private_ip}:{grant.port}"
    assert any(
        line.startswith("• :electric_plug: <@U0ALICE> opened a tunnel") and opened in line for line in lines
    )
    [refused] = [line for line in lines if line.startswith("• :no_entry:")]
    assert f"{grant.private_ip}:3389" in refused and "AccessDenied" in refused
    assert "outside what the grant allows" in refused
    # The refusal deserves a second look: the audit channel has it too; the tunnel that was
    # allowed does not go there. EICE use no grant explains goes to the default audit channel.
    # The dev rule names its own audit channel: the grant's alerts go there, not to the default.
    refusal = ("refused (", f"{grant.private_ip}:3389", grant.id)
    eventually(lambda: audit_channel(world, *refusal, channel=DEV_AUDIT))
    assert audit_channel(world, *refusal) == []
    assert audit_channel(world, "opened a tunnel", grant.id, channel=DEV_AUDIT) == []
    stray = eventually(lambda: audit_channel(world, "EICE use no grant explains", mallory.principal_arn))
    assert opened in stray[0] and dev.instance_id in stray[0]

    witnessed = chain_witness(world.rt)
    with world.rt.db.transaction() as session:
        assert (witnessed["seq"], witnessed["hash"]) == chain_head(session)
    [post] = eventually(
        lambda: audit_channel(world, "Audit chain head", witnessed["hash"], f"row {witnessed['seq']:,}")
    )
    # The command the post gives checks the log against it, rows added since or not.
    command = re.search(r"`eice (audit verify [^`]+)`", post)
    assert command is not None
    assert main([*command.group(1).split(), "--database-url", world.rt.db.url]) == 0


def _enqueued_kinds() -> set[str]:
    """Every outbox kind `access/` queues by name (the second argument of `enqueue`)."""
    kinds: set[str] = set()
    for path in (ROOT / "access").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "enqueue"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                kinds.add(str(node.args[1].value))
    return kinds


def test_every_kind_the_domain_queues_has_a_renderer(world: World) -> None:
    kinds = _enqueued_kinds()
    assert {"audit.connection", "audit.out_of_band", "audit.chain_head", "request.created"} <= kinds
    notifier = Notifier(world.rt, WebClient(base_url=world.slack.url + "/api/"))
    assert kinds - set(notifier.handlers) == set()


def test_a_one_minute_tick_does_hourly_work_once_an_hour() -> None:
    hour = 3600.0
    top = datetime(2026, 11, 29, 4, 0, 0, tzinfo=UTC)
    due = [due_this_tick(top + timedelta(minutes=m, seconds=7), hour, 60.0) for m in range(0, 180)]
    assert due.count(True) == 3 and due[0] and due[60] and due[120]
    every_5 = [due_this_tick(top + timedelta(minutes=m, seconds=7), 300.0, 60.0) for m in range(0, 60)]
    assert every_5.count(True) == 12


def test_a_burst_of_eice_use_no_grant_explains_is_one_alert() -> None:
    events = [
        {"event_name": "OpenTunnel", "principal_arn": f"arn:aws:iam::123456789012:role/r{i}",
         "private_ip": "10.0.1.4", "port": 22, "endpoint_id": "eice-0123456789abcdef0",
         "event_time": "2026-11-29T04:00:00Z", "source_ip": "203.0.113.7"}
        for i in range(25)
    ]  # fmt: skip
    text = out_of_band_notice({"events": events})
    assert text.startswith(":mag: EICE use no grant explains (25 calls):")
    assert text.count("\n• ") == 10 and "role/r9" in text and "role/r10" not in text
    assert text.endswith("… and 15 more: `eice audit --since 1d` lists them all")
    assert "(1 call)" in out_of_band_notice({"events": events[:1]})


def test_a_grant_used_many_times_in_one_page_is_one_post_in_its_thread() -> None:
    events = [
        {"event_name": "OpenTunnel", "requester_id": "U0ALICE", "private_ip": "10.0.1.4", "port": 22,
         "endpoint_id": "eice-0123456789abcdef0", "event_time": f"2026-11-29T04:{i:02d}:00Z",
         "source_ip": "203.0.113.7"}
        for i in range(25)
    ]  # fmt: skip
    text = connection_notice({"events": events}, "g-0123456789")
    assert text.startswith(":electric_plug: 25 calls through EICE (grant `g-0123456789`, CloudTrail):\n")
    assert text.count("\n• :electric_plug: <@U0ALICE> opened a tunnel to `10.0.1.4:22`") == 10
    assert text.endswith("… and 15 more: `/eice audit g-0123456789` lists them all")
    one = connection_notice({"events": events[:1]}, "g-0123456789")
    assert one.startswith(":electric_plug: <@U0ALICE> opened a tunnel") and "\n" not in one
    assert one.endswith("(grant `g-0123456789`, CloudTrail)")
    assert connection_notice(events[0], "g-0123456789") == one  # a note queued before pages were grouped
