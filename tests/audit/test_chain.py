"""Tamper evidence: verify_chain and `eice audit verify` against direct SQL edits."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from access.audit.models import AuditEvent
from access.audit.service import GENESIS, chain_hash, record, verify_chain
from access.cli.main import main

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROWS = 30


def _fill(db) -> str:
    with db.transaction() as session:
        for i in range(ROWS):
            row = record(
                session,
                random.choice(["request.created", "grant.applied", "connection.opened"]),
                actor=f"U{i:04d}",
                at=T0 + timedelta(seconds=i),
                grant_id=f"g-{i:08d}",
                detail={"n": i},
            )
        return row.hash


def _edit(conn, rng: random.Random) -> None:
    seq = rng.randint(1, ROWS)
    column, value = rng.choice(
        [
            ("kind", "'grant.revoked'"),
            ("actor", "'U9999'"),
            ("detail", """'{"n":-1}'"""),
            ("grant_id", "NULL"),
            ("at", "'2020-01-01 00:00:00'"),
            ("hash", f"'{'f' * 64}'"),
            ("prev_hash", f"'{'e' * 64}'"),
        ]
    )
    conn.execute(text(f"UPDATE audit_events SET {column} = {value} WHERE seq = {seq}"))


def _delete(conn, rng: random.Random) -> None:
    conn.execute(text(f"DELETE FROM audit_events WHERE seq = {rng.randint(1, ROWS)}"))


def _insert(conn, rng: random.Random) -> None:
    """A forged row with a correct hash of its own, slipped in at seq k (later rows renumbered)."""
    k = rng.randint(1, ROWS + 1)
    conn.execute(text(f"UPDATE audit_events SET seq = seq + 1000000 WHERE seq >= {k}"))
    conn.execute(text("UPDATE audit_events SET seq = seq - 999999 WHERE seq >= 1000000"))
    prev = conn.execute(text(f"SELECT hash FROM audit_events WHERE seq = {k - 1}")).scalar()
    forged = AuditEvent(
        seq=k,
        at=T0,
        kind="approval.given",
        actor="U0EVIL",
        request_id=None,
        grant_id=None,
        instance_id=None,
        detail={},
        prev_hash=prev or GENESIS,
    )
    forged.hash = chain_hash(forged.prev_hash, forged)
    conn.execute(
        text(
            "INSERT INTO audit_events (seq, at, kind, actor, detail, prev_hash, hash) "
            "VALUES (:seq, :at, :kind, :actor, '{}', :prev, :hash)"
        ),
        {
            "seq": k,
            "at": T0.replace(tzinfo=None),
            "kind": forged.kind,
            "actor": forged.actor,
            "prev": forged.prev_hash,
            "hash": forged.hash,
        },
    )


def _reorder(conn, rng: random.Random) -> None:
    a, b = rng.sample(range(1, ROWS + 1), 2)
    conn.execute(text(f"UPDATE audit_events SET seq = -1 WHERE seq = {a}"))
    conn.execute(text(f"UPDATE audit_events SET seq = {a} WHERE seq = {b}"))
    conn.execute(text(f"UPDATE audit_events SET seq = {b} WHERE seq = -1"))


def test_every_single_edit_delete_insert_and_reorder_is_detected(sqlite_db) -> None:
    head = _fill(sqlite_db)
    rng = random.Random(2026)
    tampers = [_edit, _delete, _insert, _reorder]
    caught = []
    for trial in range(100):
        tamper = tampers[trial % 4]
        with sqlite_db.engine.connect() as conn:
            outer = conn.begin()
            tamper(conn, rng)
            with Session(bind=conn) as session:
                result = verify_chain(session, expected_head=head)
            outer.rollback()
        caught.append((tamper.__name__, result.ok))
    assert [name for name, ok in caught if ok] == []
    with sqlite_db.transaction() as session:
        untouched = verify_chain(session, expected_head=head)
    assert (untouched.ok, untouched.rows, untouched.head) == (True, ROWS, head)


def test_eice_audit_verify_names_the_first_bad_row(sqlite_db, capsys) -> None:
    head = _fill(sqlite_db)
    url = ["--database-url", sqlite_db.url]

    assert main(["audit", "verify", *url, "--head", head]) == 0
    assert capsys.readouterr().out.strip() == f"OK: {ROWS} rows, head {head}"

    with sqlite_db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'U0EVIL' WHERE seq = 7"))
    assert main(["audit", "verify", *url]) == 1
    assert "row 7: row 7 was altered" in capsys.readouterr().err


def _rehash_from(conn, seq: int) -> None:
    """Recompute every hash from `seq` on, as someone able to write the table would to hide an edit."""
    rows = conn.execute(text("SELECT seq FROM audit_events ORDER BY seq")).scalars().all()
    with Session(bind=conn) as session:
        prev = session.get(AuditEvent, seq - 1).hash if seq > 1 else GENESIS
        for number in [n for n in rows if n >= seq]:
            row = session.get(AuditEvent, number)
            row.prev_hash = prev
            row.hash = prev = chain_hash(prev, row)
        session.flush()


def test_a_witnessed_head_catches_a_rewritten_chain_that_checks_out_on_its_own(sqlite_db, capsys) -> None:
    _fill(sqlite_db)  # rows 1-30
    with sqlite_db.transaction() as session:
        witnessed = session.get(AuditEvent, 20).hash  # what the audit channel was shown at row 20
    url = ["--database-url", sqlite_db.url]
    witness = ["--at-row", "20", "--head", witnessed]
    assert main(["audit", "verify", *url, *witness]) == 0  # later rows do not matter
    assert main(["audit", "verify", *url, "--head", witnessed]) == 1  # without --at-row: the last row
    capsys.readouterr()

    with sqlite_db.engine.connect() as conn:
        outer = conn.begin()
        conn.execute(text("UPDATE audit_events SET actor = 'U0EVIL' WHERE seq = 5"))
        _rehash_from(conn, 5)
        with Session(bind=conn) as session:
            assert verify_chain(session).ok  # consistent again: only the witness can tell
            caught = verify_chain(session, expected_head=witnessed, head_seq=20)
        outer.rollback()
    assert (caught.ok, caught.first_bad_seq) == (False, 20)
    assert "not the one the witness saw" in caught.problem

    with sqlite_db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq > 15"))  # the tail cut off
    assert main(["audit", "verify", *url]) == 0
    assert main(["audit", "verify", *url, *witness]) == 1
    assert "row 20, which the witness saw, is missing" in capsys.readouterr().err


def test_a_witness_check_is_made_or_refused_never_passed_over(sqlite_db, capsys) -> None:
    _fill(sqlite_db)  # rows 1-30
    with sqlite_db.transaction() as session:
        witnessed = session.get(AuditEvent, 20).hash
    url = ["--database-url", sqlite_db.url]
    for bad, said in (
        (["--at-row", "-1", "--head", witnessed], "'-1' is not a row number"),
        (["--at-row", "0", "--head", witnessed], "'0' is not a row number"),
        (["--at-row", "20", "--head", "00"], "'00' is not a chain hash"),
        (["--at-row", "20"], "--at-row names the row of a --head; give both"),
    ):
        try:
            code = main(["audit", "verify", *url, *bad])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        assert code == 2, bad
        err = capsys.readouterr().err
        assert said in err and "OK" not in err, (bad, err)
    with sqlite_db.transaction() as session, pytest.raises(ValueError, match="head_seq needs"):
        verify_chain(session, expected_head=witnessed, head_seq=0)
    assert main(["audit", "verify", *url, "--at-row", "20", "--head", witnessed]) == 0
