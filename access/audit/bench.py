"""`eice bench audit`: an `/eice audit` query at production table sizes, SQLite and PostgreSQL.

Synthetic data is bulk-loaded (multi-row inserts in large batches, the hash chain
computed in Python as rows are generated), then typical queries (by grant, by
instance, by user, or none of these, each with a `--since`) are timed one by one.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import make_url

from access.access_requests.models import AccessRequest, Approval
from access.audit.cloudtrail_models import CloudTrailEvent
from access.audit.models import AuditEvent
from access.audit.queries import audit_query
from access.audit.service import GENESIS, chain_hash
from access.db import Database
from access.errors import InvalidInput
from access.grants.models import Grant
from access.grants.policy import policy_name
from access.ids import numbered_id
from access.migrate import upgrade

BATCH = 10_000
NOW = datetime(2026, 6, 1, tzinfo=UTC)
SPAN = timedelta(days=60)


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _grant_rows(grants: int, rng: random.Random) -> Iterator[tuple[dict[str, Any], ...]]:
    for i in range(grants):
        created = NOW - SPAN * (1 - i / grants)
        user = f"U{i % max(1, grants // 50):06d}"
        instance = f"i-{i % max(1, grants // 20):017x}"
        principal = f"arn:aws:iam::123456789012:role/eice/{user.lower()}"
        request = {
            "id": numbered_id("r", i),
            "status": "approved",
            "requester_id": user,
            "requester_name": user.lower(),
            "principal_arn": principal,
            "account_id": "123456789012",
            "region": "us-east-1",
            "instance_id": instance,
            "instance_name": "web",
            "instance_tags": {},
            "vpc_id": "",
            "subnet_id": "",
            "endpoint_id": "eice-0123456789abcdef0",
            "endpoint_dns": "eice.example",
            "private_ip": "10.0.0.1",
            "port": 22,
            "os_user": "ec2-user",
            "duration_s": 1800,
            "reason": "bench",
            "rule_name": "defaults",
            "approvers": ["U0BOSS"],
            "approvals_required": 1,
            "approvals_count": 1,
            "allow_self_approval": False,
            "auto_approved": False,
            "break_glass": rng.random() < 0.01,
            "approvals_channel": "",
            "created_at": created,
            "approval_deadline": created + timedelta(minutes=30),
        }
        grant = {
            "id": numbered_id("g", i),
            "request_id": request["id"],
            "status": "revoked",
            "requester_id": user,
            "principal_arn": principal,
            "policy_name": policy_name(numbered_id("g", i)),
            "policy_document": {},
            "account_id": "123456789012",
            "region": "us-east-1",
            "instance_id": instance,
            "endpoint_id": "eice-0123456789abcdef0",
            "private_ip": "10.0.0.1",
            "port": 22,
            "os_user": "ec2-user",
            "overshoot_s": 300,
            "break_glass": request["break_glass"],
            "created_at": created,
            "starts_at": created,
            "expires_at": created + timedelta(minutes=30),
            "revoked_at": created + timedelta(minutes=30),
            "attempts": 0,
            "extensions": 0,
            "policy_version": 1,
            "applied_version": 1,
        }
        approval = {"request_id": request["id"], "approver_id": "U0BOSS", "created_at": created}
        yield request, grant, approval


def _event_rows(rows: int, grants: int) -> Iterator[dict[str, Any]]:
    for n in range(rows):
        g = n % grants
        at = NOW - SPAN * (1 - g / grants) + timedelta(seconds=n // grants)
        yield {
            "event_id": f"{n:012d}-{uuid.UUID(int=n)}",
            "event_name": "OpenTunnel" if n % 2 else "SendSSHPublicKey",
            "event_source": "ec2-instance-connect.amazonaws.com",
            "event_time": at,
            "region": "us-east-1",
            "account_id": "123456789012",
            "principal_arn": f"arn:aws:iam::123456789012:role/eice/u{g % max(1, grants // 50):06d}",
            "source_ip": "203.0.113.7",
            "user_agent": "aws-cli/2",
            "instance_id": f"i-{g % max(1, grants // 20):017x}",
            "grant_id": numbered_id("g", g),
            "match": "grant",
            "collected_at": at,
            "raw": {},
        }


def _audit_rows(rows: int, grants: int) -> Iterator[dict[str, Any]]:
    prev = GENESIS
    for seq in range(1, rows + 1):
        g = seq % grants
        row = AuditEvent(
            seq=seq,
            at=NOW - SPAN + timedelta(seconds=seq),
            kind="connection.opened",
            actor=f"U{g % max(1, grants // 50):06d}",
            request_id=numbered_id("r", g),
            grant_id=numbered_id("g", g),
            instance_id=None,
            detail={"n": seq},
            prev_hash=prev,
        )
        row.hash = chain_hash(prev, row)
        prev = row.hash
        yield {c: getattr(row, c) for c in AuditEvent.__table__.columns.keys()}  # noqa: SIM118


def load(db: Database, *, rows: int, grants: int, seed: int = 1) -> None:
    """Fill an empty, migrated database with `grants` grants and `rows` events and audit rows."""
    rng = random.Random(seed)
    tables: list[type[Any]] = [AccessRequest, Grant, Approval]
    with db.engine.begin() as conn:
        chunk: list[tuple[dict[str, Any], ...]] = []
        for triple in _grant_rows(grants, rng):
            chunk.append(triple)
            if len(chunk) >= BATCH:
                _insert_grants(conn, tables, chunk)
                chunk = []
        _insert_grants(conn, tables, chunk)
        for batch in _batches(_event_rows(rows, grants)):
            conn.execute(insert(CloudTrailEvent), batch)
        for batch in _batches(_audit_rows(rows, grants)):
            conn.execute(insert(AuditEvent), batch)
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            conn.exec_driver_sql("COMMIT")
            conn.exec_driver_sql("ANALYZE")
    else:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")


def _insert_grants(conn: Any, tables: list[type[Any]], chunk: list[tuple[dict[str, Any], ...]]) -> None:
    if chunk:
        for index, table in enumerate(tables):
            conn.execute(insert(table), [triple[index] for triple in chunk])


def _queries(grants: int, count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    since = NOW - timedelta(days=7)
    made: list[dict[str, Any]] = []
    for n in range(count):
        kind = n % 4
        recent = rng.randrange(int(grants * 0.85), grants)
        if kind == 0:
            made.append({"grant_id": numbered_id("g", recent), "since": NOW - timedelta(days=90)})
        elif kind == 1:
            made.append({"instance_id": f"i-{recent % max(1, grants // 20):017x}", "since": since})
        elif kind == 2:
            made.append({"user_id": f"U{recent % max(1, grants // 50):06d}", "since": since})
        else:  # a bare `/eice audit`: the newest grants of the window (ix_grants_created)
            made.append({"since": since})
    return made


def time_queries(db: Database, queries: list[dict[str, Any]]) -> list[float]:
    """Milliseconds per query, each in its own session, as a Slack command would run it."""
    timings = []
    for params in queries:
        started = time.perf_counter()
        with db.sessions() as session:
            results = audit_query(session, limit=20, **params)
            del results
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _p(values: list[float], q: float) -> float:
    if len(values) < 2:
        return round(values[0], 3) if values else 0.0
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 3)


def _run(url: str, rows: int, grants: int, queries: int) -> list[float]:
    upgrade(url)
    db = Database(url)
    try:
        load(db, rows=rows, grants=grants)
        plan = _queries(grants, queries, seed=2)
        time_queries(db, plan[: min(20, len(plan))])  # warm the caches
        return time_queries(db, plan)
    finally:
        db.dispose()


def _with_postgres(url: str, body: Callable[[str], list[float]]) -> list[float]:
    import psycopg

    base = make_url(url)
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"eice_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        return body(base.set(database=name).render_as_string(hide_password=False))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_audit(
    rows: int = 1_000_000,
    grants: int = 100_000,
    queries: int = 300,
    postgres_url: str | None = None,
) -> dict[str, Any]:
    """Time `/eice audit` queries on SQLite (and PostgreSQL when a server URL is given).

    Args:
        rows: collected CloudTrail events, and audit-log rows, to load.
        grants: grants (each with its request and one approval).
        queries: queries to time per database.
        postgres_url: a server to create (and drop) a scratch database on; None skips it.
    """
    if rows < 1 or grants < 1 or queries < 1:
        raise InvalidInput("--rows, --grants and --queries must be at least 1")
    figures: dict[str, Any] = {"rows": rows, "grants": grants, "queries": queries}
    with tempfile.TemporaryDirectory(prefix="eice-bench-audit-") as tmp:
        timings = _run(f"sqlite:///{Path(tmp) / 'audit.sqlite'}", rows, grants, queries)
    figures["sqlite_p50_ms"] = _p(timings, 50)
    figures["sqlite_p99_ms"] = _p(timings, 99)
    if postgres_url:
        timings = _with_postgres(postgres_url, lambda url: _run(url, rows, grants, queries))
        figures["postgres_p50_ms"] = _p(timings, 50)
        figures["postgres_p99_ms"] = _p(timings, 99)
    return {"benchmark": "audit", "figures": figures, "ratios": {}}


if __name__ == "__main__":  # pragma: no cover - `python -m access.audit.bench`
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--postgres-url")
    args = parser.parse_args()
    print(json.dumps(bench_audit(args.rows, args.grants, args.queries, args.postgres_url)))
