"""Where each poll starts: watermark, overlap, late passes, and regions that fail."""

from __future__ import annotations

import random
import time
from datetime import timedelta

from access.audit.cloudtrail_models import CollectorWatermark
from access.audit.collector import EICE_SOURCE as EICE
from access.audit.collector import CloudTrailCollector
from tests.audit.conftest import (
    ACCOUNT,
    audit_kinds,
    make_grant,
    make_runtime,
    now,
    outbox_of,
    role_person,
    stored_events,
    tunnel_record,
)

ALICE = role_person("alice")
MALLORY = role_person("mallory")


def test_late_out_of_order_delivery_is_neither_missed_nor_duplicated(sandbox, sqlite_db) -> None:
    rt = make_runtime(sqlite_db)
    t0 = now()
    with sqlite_db.transaction() as session:
        make_grant(session, ALICE, starts_at=t0 - timedelta(minutes=30), minutes=60)
    collector = CloudTrailCollector(rt, account=ACCOUNT)
    rng = random.Random(7)
    recorded = []
    for poll in range(4):
        for _ in range(5):
            # Old eventTimes, delivered from now to a few poll intervals later, in any order.
            age = rng.uniform(0, 600)
            record = tunnel_record(ALICE, at=now() - timedelta(seconds=age))
            sandbox.events.record(record, delay_s=age + rng.uniform(0, 1.5))
            recorded.append(record["eventID"])
        collector.poll()
        if poll == 1:
            with sqlite_db.transaction() as session:
                mark = session.get(CollectorWatermark, (ACCOUNT, "us-east-1", EICE))
                assert mark is not None and mark.watermark <= now()
    time.sleep(1.6)
    collector.poll()
    collector.poll()  # everything is seen twice by now; nothing may be stored twice

    rows = stored_events(sqlite_db)
    assert sorted(r.event_id for r in rows) == sorted(recorded)
    assert all(r.match == "grant" for r in rows)
    assert audit_kinds(sqlite_db).count("connection.opened") == len(recorded)
    notes = outbox_of(sqlite_db, "audit.connection")
    announced = [event["event_id"] for note in notes for event in note.payload["events"]]
    assert sorted(announced) == sorted(recorded)  # each event announced once, a note per grant and page
    assert len(notes) <= 6  # six polls: at most one note each for the one grant, not one per event


def test_watermark_minus_overlap_bounds_the_next_query(sandbox, sqlite_db) -> None:
    t0 = now()
    collector = CloudTrailCollector(make_runtime(sqlite_db), account=ACCOUNT, overlap=timedelta(minutes=15))
    sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(minutes=3)))
    collector.poll()
    # Delivered now, 10 min old: inside the overlap, so the next poll still finds it.
    sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(minutes=13)))
    # 40 min old: before watermark - overlap, outside what the next poll asks for.
    sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(minutes=40)))
    collector.poll()
    assert len(stored_events(sqlite_db)) == 2
    with sqlite_db.transaction() as session:
        mark = session.get(CollectorWatermark, (ACCOUNT, "us-east-1", EICE))
    assert mark.watermark == t0 - timedelta(minutes=3)


def test_a_region_that_refuses_does_not_stop_the_others(sandbox, sqlite_db) -> None:
    sandbox.events.record(tunnel_record(MALLORY, at=now() - timedelta(minutes=1)))  # us-east-1
    sandbox.faults.update({"lookup_refused_regions": ["eu-west-1"]})  # first in the list
    try:
        rt = make_runtime(sqlite_db, regions=("eu-west-1", "us-east-1"))
        report = CloudTrailCollector(rt, account=ACCOUNT).poll()
    finally:
        sandbox.faults.clear()
    assert report.failed == {f"eu-west-1/{EICE}": "AccessDeniedException"}
    assert report.new == 1  # us-east-1's event, collected all the same
    assert f"us-east-1/{EICE}" in report.watermarks
    assert f"eu-west-1/{EICE}" not in report.watermarks  # again next time


def _mark(db, source: str = EICE) -> CollectorWatermark:
    with db.transaction() as session:
        mark = session.get(CollectorWatermark, (ACCOUNT, "us-east-1", source))
    assert mark is not None
    return mark


def test_a_late_pass_collects_what_came_later_than_the_overlap(sandbox, sqlite_db) -> None:
    t0 = now()
    collector = CloudTrailCollector(
        make_runtime(sqlite_db),
        account=ACCOUNT,
        overlap=timedelta(minutes=15),
        late_window=timedelta(hours=6),
        late_every=timedelta(seconds=2),
    )
    recent = sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(minutes=1)))
    assert collector.poll().late_passes == []  # the first poll reads back `lookback` already
    # Delivered only now, later than the overlap allows for (CloudTrail: sometimes over an hour).
    forty_min = sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(minutes=40)))
    five_h = sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(hours=5)))
    sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(hours=7)))  # beyond the window

    quick = collector.poll()
    assert (quick.late_passes, quick.new) == ([], 0)  # not due: an ordinary poll, the overlap only
    time.sleep(2.2)
    late = collector.poll()
    assert late.late_passes == [f"us-east-1/{EICE}"]  # IAM: no event yet, so every poll reads `lookback`
    assert late.new == 2
    ids = {row.event_id for row in stored_events(sqlite_db)}
    assert ids == {recent["eventID"], forty_min["eventID"], five_h["eventID"]}
    assert audit_kinds(sqlite_db).count("connection.out_of_band") == 3  # each recorded once
    assert _mark(sqlite_db).watermark == t0 - timedelta(minutes=1)  # a late pass never moves it back

    collector.late_every = timedelta(hours=1)  # (the 2 s above have passed again by now)
    again = collector.poll()
    assert (again.late_passes, again.new) == ([], 0)  # the next is `late_every` after this one began


def test_a_late_pass_is_due_after_the_upgrade_and_waits_out_a_failure(sandbox, sqlite_db) -> None:
    t0 = now()
    collector = CloudTrailCollector(make_runtime(sqlite_db), account=ACCOUNT)  # [audit] defaults
    sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(minutes=1)))
    collector.poll()
    with sqlite_db.transaction() as session:  # as migration 0006 leaves the rows it finds
        session.get(CollectorWatermark, (ACCOUNT, "us-east-1", EICE)).late_pass_at = None
    two_h = sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(hours=2)))

    sandbox.faults.update({"lookup_refused_regions": ["us-east-1"]})
    try:
        failed = collector.poll()
    finally:
        sandbox.faults.clear()
    assert f"us-east-1/{EICE}" in failed.failed
    assert failed.late_passes == []
    assert _mark(sqlite_db).late_pass_at is None  # still due

    done = collector.poll()
    assert done.late_passes == [f"us-east-1/{EICE}"]
    assert two_h["eventID"] in {row.event_id for row in stored_events(sqlite_db)}
    assert _mark(sqlite_db).late_pass_at is not None


def test_a_long_late_pass_goes_on_where_it_stopped_and_polls_go_on_meanwhile(sandbox, sqlite_db) -> None:
    """A pass reads a few pages a poll and keeps its place: on Lambda, a pass longer than a
    tick used to start again from the top at every tick, and never end."""
    t0 = now()
    collector = CloudTrailCollector(
        make_runtime(sqlite_db), account=ACCOUNT, late_every=timedelta(hours=1), late_calls=2
    )
    sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(minutes=1)))
    collector.poll()
    with sqlite_db.transaction() as session:  # due now, as after the upgrade
        session.get(CollectorWatermark, (ACCOUNT, "us-east-1", EICE)).late_pass_at = None
    late = [  # 230 events (5 pages) delivered late, spread over the four hours before
        sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(minutes=30, seconds=61 * n)))
        for n in range(230)
    ]
    polls, fresh = 0, []
    while True:
        fresh.append(sandbox.events.record(tunnel_record(MALLORY, at=now())))  # ordinary traffic
        report = collector.poll()
        polls += 1
        assert fresh[-1]["eventID"] in {r.event_id for r in stored_events(sqlite_db)}  # each poll collects
        if report.late_passes:
            break
        assert report.late_left and polls < 10
        with sqlite_db.transaction() as session:
            mark = session.get(CollectorWatermark, (ACCOUNT, "us-east-1", EICE))
            assert mark.late_until is not None
            assert mark.late_until.isoformat() == report.late_left[f"us-east-1/{EICE}"]
    assert polls == 3  # 5 pages of the pass, 2 a poll
    ids = [r.event_id for r in stored_events(sqlite_db)]
    assert len(ids) == len(set(ids)) == 1 + len(late) + len(fresh)
    with sqlite_db.transaction() as session:
        mark = session.get(CollectorWatermark, (ACCOUNT, "us-east-1", EICE))
        assert (mark.late_from, mark.late_until) == (None, None)


def test_two_collectors_first_watermarks_at_once_make_one_row(sandbox, db) -> None:
    """Two servers' first polls of a source both found no row; the second insert failed."""
    import threading

    first = CloudTrailCollector(make_runtime(db), account=ACCOUNT)
    second = CloudTrailCollector(make_runtime(db), account=ACCOUNT)
    t0 = now()
    failures: list[BaseException] = []

    def save_too() -> None:
        try:
            with db.transaction() as session:
                second._save_watermark(session, "us-east-1", EICE, t0)
        except BaseException as exc:
            failures.append(exc)

    with db.transaction() as session:
        first._save_watermark(session, "us-east-1", EICE, t0 - timedelta(seconds=5))
        racer = threading.Thread(target=save_too)
        racer.start()
        racer.join(1.0)
        assert racer.is_alive()  # it waits for this transaction
    racer.join(30)
    assert failures == []
    assert _mark(db).watermark == t0  # the later one's, moved forward
