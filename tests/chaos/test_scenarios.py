"""`eice chaos` in short: every scenario at a small size must keep every invariant, and the
checker itself must catch a broken one (an orphan policy, a row that lies about IAM).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from access.chaos.harness import ChaosWorld, chaos_database
from access.chaos.invariants import INVARIANTS, check
from access.chaos.scenarios import NAMES, execute
from access.chaos.scenarios.base import ChaosOptions
from access.grants.models import Grant
from access.scheduler.reconciler import reconcile

ROOT = Path(__file__).resolve().parents[2]

# Small sizes: the whole package stays within a few minutes on a shared 2-core machine.
SHORT = {
    "kill": ChaosOptions(lifecycles=8, kills_per_point=1, restart_delay_s=0.2),
    "outage": ChaosOptions(lifecycles=12),
    "unrevocable": ChaosOptions(lifecycles=4, duration_s=2),
    "throttle": ChaosOptions(lifecycles=12, duration_s=10),
    "postgres-restart": ChaosOptions(lifecycles=8, duration_s=40),
    "replicas": ChaosOptions(lifecycles=12, duration_s=12),
    "clock": ChaosOptions(lifecycles=8, duration_s=12),
    # Before the fix, clock revoked early and late and slack (seed 1) posted duplicate cards.
    "slack": ChaosOptions(lifecycles=10, seed=1),
}


@pytest.mark.parametrize("name", NAMES)
def test_scenario_keeps_every_invariant(name: str, tmp_path: Path) -> None:
    opts = SHORT[name]
    opts.workdir = tmp_path
    result = execute(name, opts)
    answer = result.as_json()
    assert set(answer) >= {"scenario", "ok", "invariants", "figures"}  # DESIGN.md section 10
    assert answer["scenario"] == name
    assert set(INVARIANTS) <= set(answer["invariants"])
    for key in ("lag_p50_s", "lag_p99_s", "lag_max_s", "orphans", "drift", "iam_calls_per_grant", "restarts"):
        assert key in answer["figures"]
    json.dumps(answer)
    assert answer["figures"]["grants"] >= 1
    assert answer["ok"], answer["problems"]
    assert all(answer["invariants"].values())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[ChaosWorld]:
    with chaos_database("sqlite", tmp_path) as url:
        w = ChaosWorld(tmp_path, users=2).start(url)
        try:
            yield w
        finally:
            w.stop()


def _one_grant(world: ChaosWorld) -> Grant:
    request_id = world.submit(world.users[0], "dev-box", "30m")
    assert request_id is not None
    with world.rt.db.transaction() as s:
        grant = s.query(Grant).filter_by(request_id=request_id).one()
        s.expunge(grant)
    return grant


def test_checker_reports_an_orphan_policy_until_reconcile(world: ChaosWorld) -> None:
    grant = _one_grant(world)
    principal = grant.principal_arn  # the reconciler scans principals the bot has granted to
    world.rt.iam.put(principal, "eice-grant-g-behindback", grant.policy_document)
    before = check(world.snapshot())
    assert before.invariants["iam_matches_grants"] is False
    assert any("orphan policy eice-grant-g-behindback" in p for p in before.problems["iam_matches_grants"])
    assert reconcile(world.rt).orphans_deleted == ["eice-grant-g-behindback"]
    after = check(world.snapshot())
    assert after.invariants["iam_matches_grants"] is True
    assert after.figures["orphans"] == 1


def test_checker_catches_a_row_marked_revoked_while_its_policy_stays(world: ChaosWorld) -> None:
    grant = _one_grant(world)
    assert check(world.snapshot()).ok
    with world.rt.db.transaction() as s:
        s.execute(
            update(Grant).where(Grant.id == grant.id).values(status="revoked", revoked_at=grant.created_at)
        )
    verdict = check(world.snapshot())
    assert verdict.invariants["iam_matches_grants"] is False
    assert verdict.invariants["audit_complete"] is False  # revoked without a grant.revoked row
    assert verdict.ok is False


def test_cli_rejects_bad_sizes_and_unknown_scenarios() -> None:
    def eice(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "access.cli.main", "chaos", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )

    bad = eice("--scenario", "kill", "--lifecycles", "0")
    assert bad.returncode == 2 and "--lifecycles must be positive" in bad.stderr
    unknown = eice("--scenario", "meteor")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    with pytest.raises(ValueError, match="unknown scenario"):
        execute("meteor", ChaosOptions())
    # Flags a scenario would ignore are refused, not silently overridden.
    sqlite = eice("--scenario", "replicas", "--database", "sqlite")
    assert sqlite.returncode == 2 and "replicas runs on postgres only" in sqlite.stderr
    url = eice("--scenario", "postgres-restart", "--postgres-url", "postgresql://x@127.0.0.1:1/x")
    assert url.returncode == 2 and "--postgres-url does not apply" in url.stderr


def _chaos_databases() -> set[str]:
    from sqlalchemy import text

    from access.db import make_engine
    from tests.dbs import POSTGRES_URL

    engine = make_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            names = conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE 'eice_chaos_%'"))
            return {str(n) for n in names.scalars()}
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_sigterm_cleans_up_the_throwaway_database_bots_and_folder(tmp_path: Path) -> None:
    """A run cut short (a CI timeout's SIGTERM) used to leave its database and folder behind."""
    import os
    import signal
    import time

    before = _chaos_databases()
    run = subprocess.Popen(
        [sys.executable, "-m", "access.cli.main", "chaos", "--scenario", "replicas", "--lifecycles", "40"],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while not (_chaos_databases() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _chaos_databases() - before, "the run never made its database"
    time.sleep(3)  # well into it: bots started
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143, err[-2000:]
    assert _chaos_databases() == before
    assert not list(tmp_path.glob("eice-chaos-*"))
