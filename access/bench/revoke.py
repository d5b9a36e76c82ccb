"""`bench revoke`: a revocation storm of N grants expiring within a window, on SQLite and PostgreSQL.

The bot runs as `eice serve --http`; once it is up and warmed, N active grants (rows and
real policies in the sandbox IAM) are seeded with expiries spread over the window. The
figures are the lag from `expires_at` to `revoked_at`, IAM DeleteRolePolicy calls per
grant, the bot's peak RSS, and ack latency of signed commands fired during the storm.
"""

from __future__ import annotations

import gc
import json
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.iam.models import iam_backends
from sqlalchemy import func, select

from access.bench.acks import AckProbe, fire
from access.bench.seed import SeededGrant, seed_grants, spread
from access.bench.world import BotProcess, Sandboxes, percentile, sandboxes, scratch_database
from access.db import Database
from access.grants.models import Grant, GrantStatus

DONE = (GrantStatus.REVOKED, GrantStatus.FAILED)


def _wait_all_done(db: Database, ids: list[str], deadline: float) -> int:
    """Poll until every seeded grant is revoked (or the deadline passes); returns how many are."""
    done = 0
    while time.monotonic() < deadline:
        with db.transaction() as session:
            done = session.scalar(select(func.count()).select_from(Grant).where(Grant.status.in_(DONE))) or 0
        if done >= len(ids):
            return done
        time.sleep(0.5)
    return done


def _lags(db: Database, seeded: list[SeededGrant]) -> list[float]:
    wanted = {g.id for g in seeded}
    with db.transaction() as session:
        rows = session.execute(
            select(Grant.id, Grant.expires_at, Grant.revoked_at).where(Grant.revoked_at.is_not(None))
        ).all()
    return [
        (revoked - expires).total_seconds() for gid, expires, revoked in rows if gid in wanted and revoked
    ]


def _policies_left(world: Sandboxes, seeded: list[SeededGrant]) -> int:
    iam = iam_backends[world.aws.account_id]["aws"]
    left = 0
    for role_name in {g.role_name for g in seeded}:
        left += len(iam.get_role(role_name).policies)
    return left


def run_one(
    world: Sandboxes, kind: str, grants: int, window_s: float, *, postgres_url: str, ack_rate: float
) -> dict[str, Any]:
    """One storm on one database kind; returns its raw measurements."""
    with scratch_database(kind, world.folder, postgres_url) as url:
        db = Database(url)
        bot = BotProcess(world, url)
        try:
            bot.wait_healthy()
            calm = fire(world, bot.url, 40, concurrency=2)
            world.aws.faults.reset_counters()
            lead_s = 5.0 + grants * 0.0015
            expiries = spread(grants, datetime.now(UTC) + timedelta(seconds=lead_s), window_s)
            seeded = seed_grants(
                world.aws,
                world.estate,
                db,
                expiries,
                role_prefix=f"bench-{kind}-{uuid.uuid4().hex[:6]}",
                slack=world.slack,
            )
            late = sum(1 for g in seeded if g.expires_at <= datetime.now(UTC))
            # The stand-ins share this process: keep the collector from rescanning the seeded
            # estate (and an earlier run's leftovers) in full pauses during the storm.
            gc.collect()
            gc.freeze()
            cpu_before, own_before = bot.cpu_s(), time.process_time()
            probe = AckProbe(world, bot.url, rate_per_s=ack_rate).start()
            try:
                end = expiries[-1] + timedelta(seconds=2)
                time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()))
            finally:
                storm = probe.stop()
            revoked = _wait_all_done(db, [g.id for g in seeded], time.monotonic() + 120)
            gc.unfreeze()
            peak = bot.peak_rss_mb()
            bot_cpu, own_cpu = bot.cpu_s() - cpu_before, time.process_time() - own_before
        finally:
            bot.stop()
        lags = _lags(db, seeded)
        counts = world.aws.faults.counters.snapshot()["counts"]
        deletes = counts.get("iam:DeleteRolePolicy", 0)
        left = _policies_left(world, seeded)
        db.dispose()
    return {
        "lags": lags,
        "revoked": revoked,
        "late": late,
        "deletes": deletes,
        "policies_left": left,
        "peak_rss_mb": peak,
        "bot_cpu_s": bot_cpu,
        "sandbox_cpu_s": own_cpu,
        "calm": calm,
        "storm": storm,
        "storm_failures": probe.failures,
    }


def bench_revoke(
    grants: int = 10_000,
    window_s: float = 60.0,
    *,
    postgres_url: str | None = None,
    ack_rate: float = 2.0,
    kinds: tuple[str, ...] = ("sqlite", "postgres"),
) -> dict[str, Any]:
    """Run the storm on SQLite (and PostgreSQL when `postgres_url` is given).

    Args:
        grants: grants seeded per database, all expiring within `window_s`.
        window_s: seconds over which their expiries are spread.
        postgres_url: a server to create (and drop) a scratch database on; None skips it.
        ack_rate: signed commands per second fired at the bot during the storm.
        kinds: which databases to run on ("postgres" is skipped without `postgres_url`).
    """
    kinds = tuple(k for k in kinds if k == "sqlite" or postgres_url)
    if len(kinds) > 1:
        return _each_in_its_own_process(grants, window_s, postgres_url or "", ack_rate, kinds)
    figures: dict[str, Any] = {"grants": grants, "window_s": window_s}
    runs: dict[str, dict[str, Any]] = {}
    for index, kind in enumerate(kinds):
        # A fresh Slack and AWS stand-in per database: the first storm's 30,000 messages
        # and thousands of roles would slow the second's sandbox, not the bot.
        with sandboxes(reset=index > 0) as world:
            runs[kind] = run_one(
                world, kind, grants, window_s, postgres_url=postgres_url or "", ack_rate=ack_rate
            )
    for kind, run in runs.items():
        lags = run["lags"]
        figures[f"{kind}_lag_p50_s"] = round(statistics.median(lags), 3) if lags else None
        figures[f"{kind}_lag_p99_s"] = round(percentile(lags, 0.99), 3) if lags else None
        figures[f"{kind}_lag_max_s"] = round(max(lags), 3) if lags else None
        figures[f"{kind}_revoked"] = run["revoked"]
        figures[f"{kind}_seeded_late"] = run["late"]
        figures[f"{kind}_policies_left"] = run["policies_left"]
        figures[f"{kind}_bot_cpu_s"] = round(run["bot_cpu_s"], 1)
        figures[f"{kind}_sandbox_cpu_s"] = round(run["sandbox_cpu_s"], 1)
    total = grants * len(runs)
    figures["iam_calls_per_grant"] = round(sum(r["deletes"] for r in runs.values()) / total, 3)
    figures["peak_rss_mb"] = round(max(r["peak_rss_mb"] for r in runs.values()), 1)
    storm = [x for r in runs.values() for x in r["storm"]]
    calm = [x for r in runs.values() for x in r["calm"]]
    figures["storm_acks"] = len(storm)
    figures["storm_ack_failures"] = sum(r["storm_failures"] for r in runs.values())
    figures["storm_ack_p50_ms"] = round(statistics.median(storm), 3) if storm else None
    figures["storm_ack_p99_ms"] = round(percentile(storm, 0.99), 3) if storm else None
    figures["calm_ack_p99_ms"] = round(percentile(calm, 0.99), 3)
    ratios = {}
    if storm and figures["calm_ack_p99_ms"]:
        ratios["storm_ack_p99"] = round(figures["storm_ack_p99_ms"] / figures["calm_ack_p99_ms"], 3)
    return {"benchmark": "revoke", "figures": figures, "ratios": ratios}


def _each_in_its_own_process(
    grants: int, window_s: float, postgres_url: str, ack_rate: float, kinds: tuple[str, ...]
) -> dict[str, Any]:
    """One `eice bench revoke --db KIND` process per database, merged into one result.

    The in-process stand-ins keep what the first storm left (30,000 Slack messages,
    thousands of moto roles, a grown heap); a fresh process per database keeps the
    second storm from paying for the first. Shared figures take the worst database.
    """
    results = []
    for kind in kinds:
        command = [
            sys.executable, "-m", "access.cli.main", "bench", "revoke", "--json", "--db", kind,
            "--grants", str(grants), "--window-s", str(window_s), "--ack-rate", str(ack_rate),
            "--postgres-url", postgres_url,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"bench revoke --db {kind} failed:\n{done.stderr[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1])["figures"])
    figures: dict[str, Any] = {"grants": grants, "window_s": window_s}
    for kind, run in zip(kinds, results, strict=True):
        figures.update({k: v for k, v in run.items() if k.startswith(f"{kind}_")})
    figures["iam_calls_per_grant"] = round(statistics.mean(r["iam_calls_per_grant"] for r in results), 3)
    figures["peak_rss_mb"] = max(r["peak_rss_mb"] for r in results)
    figures["storm_acks"] = sum(r["storm_acks"] for r in results)
    figures["storm_ack_failures"] = sum(r["storm_ack_failures"] for r in results)
    for name in ("storm_ack_p50_ms", "storm_ack_p99_ms", "calm_ack_p99_ms"):
        values = [r[name] for r in results if r.get(name) is not None]
        figures[name] = max(values) if values else None
    ratios = {}
    if figures["storm_ack_p99_ms"] and figures["calm_ack_p99_ms"]:
        ratios["storm_ack_p99"] = round(figures["storm_ack_p99_ms"] / figures["calm_ack_p99_ms"], 3)
    return {"benchmark": "revoke", "figures": figures, "ratios": ratios}
