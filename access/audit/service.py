"""Appending to and checking the hash-chained audit log. Services never commit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from access.audit.models import AuditEvent

GENESIS = "0" * 64
# Any constant: the key of the PostgreSQL advisory lock that orders appends.
_CHAIN_LOCK = 0x0E1CE_A0D1


def canonical(row: AuditEvent) -> str:
    """The exact text a row's hash covers (every field but the hashes themselves)."""
    return json.dumps(
        {
            "seq": row.seq,
            "at": row.at.isoformat(timespec="microseconds"),
            "kind": row.kind,
            "actor": row.actor,
            "request_id": row.request_id,
            "grant_id": row.grant_id,
            "instance_id": row.instance_id,
            "detail": row.detail,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def chain_hash(prev_hash: str, row: AuditEvent) -> str:
    return hashlib.sha256((prev_hash + canonical(row)).encode("utf-8")).hexdigest()


def record(
    session: Session,
    kind: str,
    *,
    actor: str,
    at: datetime,
    request_id: str | None = None,
    grant_id: str | None = None,
    instance_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one row to the chain, inside the caller's transaction."""
    entry = AuditEntry(kind, actor, at, request_id, grant_id, instance_id, detail)
    return record_many(session, [entry])[0]


@dataclass(frozen=True)
class AuditEntry:
    """One row to append (`record`'s arguments), for `record_many`."""

    kind: str
    actor: str
    at: datetime
    request_id: str | None = None
    grant_id: str | None = None
    instance_id: str | None = None
    detail: dict[str, Any] | None = None


def record_many(session: Session, entries: list[AuditEntry]) -> list[AuditEvent]:
    """Append rows to the chain in order, with one head read and one flush for them all."""
    if not entries:
        return []
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK})
    head = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    rows = []
    for entry in entries:
        # Round-trip the detail through JSON now so the hash covers what will be read back.
        detail_json = json.loads(json.dumps(entry.detail or {}, sort_keys=True, default=str))
        row = AuditEvent(
            seq=seq,
            at=entry.at.replace(microsecond=entry.at.microsecond),
            kind=entry.kind,
            actor=entry.actor,
            request_id=entry.request_id,
            grant_id=entry.grant_id,
            instance_id=entry.instance_id,
            detail=detail_json,
            prev_hash=prev,
        )
        row.hash = chain_hash(prev, row)
        rows.append(row)
        seq, prev = seq + 1, row.hash
    session.add_all(rows)
    session.flush()
    return rows


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    head: str
    first_bad_seq: int | None = None
    problem: str = ""


def _iter_rows(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify_chain(
    session: Session, *, expected_head: str | None = None, head_seq: int | None = None
) -> VerifyResult:
    """Walk the chain in order; name the first row that was edited, removed, added or moved.

    Args:
        expected_head: a hash a witness saw (the audit channel's post): the chain must
            still hold it, at row `head_seq` when given, else as its last row.
        head_seq: the row the witnessed hash belongs to (>= 1; only with `expected_head`).

    A witnessed row is either compared or reported missing: never passed over.
    """
    if head_seq is not None and (expected_head is None or head_seq < 1):
        raise ValueError("head_seq needs expected_head and must be a row number (1 or more)")
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for row in _iter_rows(session):
        count += 1
        if row.seq != expected_seq:
            return VerifyResult(
                False,
                count,
                prev_hash,
                row.seq,
                f"row {expected_seq} is missing (found {row.seq} next)",
            )
        if row.prev_hash != prev_hash:
            return VerifyResult(
                False, count, prev_hash, row.seq, f"row {row.seq} does not follow the row before it"
            )
        if chain_hash(prev_hash, row) != row.hash:
            return VerifyResult(
                False, count, prev_hash, row.seq, f"row {row.seq} was altered after it was written"
            )
        if expected_head is not None and row.seq == head_seq and row.hash != expected_head:
            problem = f"row {row.seq} is not the one the witness saw: the log up to it was rewritten"
            return VerifyResult(False, count, row.hash, row.seq, problem)
        prev_hash, expected_seq = row.hash, row.seq + 1
    if head_seq is not None and head_seq >= expected_seq:
        problem = f"row {head_seq}, which the witness saw, is missing"
        return VerifyResult(False, count, prev_hash, None, problem)
    if expected_head is not None and head_seq is None and expected_head != prev_hash:
        return VerifyResult(False, count, prev_hash, None, "the chain does not end at the witnessed head")
    return VerifyResult(True, count, prev_hash)


def chain_head(session: Session) -> tuple[int, str]:
    """(seq, hash) of the newest row; (0, GENESIS) for an empty log."""
    head = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    return (head[0], head[1]) if head else (0, GENESIS)
