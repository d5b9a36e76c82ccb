"""The scenarios of `eice chaos`, and `execute`, which runs one and checks the invariants."""

from __future__ import annotations

import contextlib
import importlib
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from access.chaos.harness import ChaosWorld, chaos_database, now
from access.chaos.invariants import Snapshot, check
from access.chaos.scenarios.base import ChaosOptions, Outcome, Scenario
from access.scheduler.reconciler import reconcile

NAMES = ("kill", "outage", "throttle", "unrevocable", "postgres-restart", "replicas", "clock", "slack")
FINISH_TIMEOUT_S = 600.0


def scenario(name: str) -> Scenario:
    """The scenario called `name` (ValueError for an unknown one)."""
    if name not in NAMES:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(NAMES)}")
    module = importlib.import_module(f"access.chaos.scenarios.{name.replace('-', '_')}")
    found: Scenario = module.SCENARIO
    return found


@dataclass
class Result:
    """The printed answer: DESIGN.md section 10's shape plus the problems found."""

    scenario: str
    ok: bool
    invariants: dict[str, bool]
    figures: dict[str, Any]
    problems: dict[str, list[str]]

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "ok": self.ok,
            "invariants": self.invariants,
            "figures": self.figures,
            "problems": {k: v[:20] for k, v in self.problems.items() if v},
        }


@contextlib.contextmanager
def _database(sc: Scenario, opts: ChaosOptions, workdir: Path) -> Iterator[tuple[str, Any]]:
    kind = sc.database or opts.database
    if sc.private_postgres:
        from access.chaos.pgcluster import PrivateCluster

        with PrivateCluster(workdir / "pg") as cluster:
            yield cluster.create_database(), cluster
        return
    with chaos_database(kind, workdir, opts.postgres_url) as url:
        yield url, None


def execute(name: str, opts: ChaosOptions) -> Result:
    """Run scenario `name`: world up, fault injected, everything finished, then the checks."""
    sc = scenario(name)
    rng = random.Random(opts.seed)
    with contextlib.ExitStack() as stack:
        folder = opts.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eice-chaos-")))
        folder.mkdir(parents=True, exist_ok=True)
        url, cluster = stack.enter_context(_database(sc, opts, folder))
        world = ChaosWorld(
            folder,
            users=sc.users(opts),
            overdue_after_s=sc.overdue_after_s(opts),
            claim_lease_s=sc.claim_lease_s,
        )
        world.cluster = cluster
        world.aws.faults.seed(opts.seed)
        started = time.monotonic()
        world.start(url)
        try:
            world.start_observer()
            outcome = sc.run(world, opts, rng)
            final = finish(sc, world, outcome)
        finally:
            world.stop()
        final.figures["duration_s"] = round(time.monotonic() - started, 1)
        return final


def finish(sc: Scenario, world: ChaosWorld, outcome: Outcome) -> Result:
    """A clean bot finishes what is due; then every bot stops, one reconcile pass, the checks."""
    bot = next((b for b in world.bots if b.alive() and not b.stopped), None)
    if bot is None:
        world.restarts += 1
        bot = world.spawn("finisher")
    finished = world.wait_all_final(FINISH_TIMEOUT_S)
    ended = outcome.ended_at or now()
    for b in world.bots:
        b.terminate()
    world.stop_observer()
    report = reconcile(world.rt)
    snap: Snapshot = world.snapshot(ended_at=ended, excused=outcome.excused)
    extra = {**outcome.extra, **(sc.after(snap) if sc.after else {})}
    verdict = check(snap, extra={**extra, "all_finished": [] if finished else ["grants left unfinished"]})
    figures = {**verdict.figures, "restarts": world.restarts, **outcome.figures}
    figures["orphans_in_final_reconcile"] = len(report.orphans_deleted)
    return Result(sc.name, verdict.ok, verdict.invariants, figures, verdict.problems)
