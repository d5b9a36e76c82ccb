"""One tick: what the EventBridge schedule (Lambda) or `eice tick` runs once."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from access.runtime import Runtime
from access.scheduler.reaper import reap
from access.scheduler.reconciler import reconcile


def due_this_tick(now: datetime, every_s: float, tick_s: float) -> bool:
    """On a schedule that ticks every `tick_s` (Lambda's `rate(1 minute)`), whether this tick
    is the one of each `every_s` that does work wanted that often (a missed tick skips one)."""
    return now.timestamp() % every_s < tick_s


def tick_left_undone(result: dict[str, Any]) -> list[str]:
    """What a tick's summary says was not done (and will be tried again): revocations or
    applications still pending, reconciler errors, CloudTrail sources that failed."""
    left = []
    pending = result.get("reaper", {}).get("still_pending", 0)
    if pending:
        left.append(f"{pending} grant(s) still to apply or revoke")
    errors = result.get("reconciler", {}).get("errors") or []
    if errors:
        left.append(f"reconciler: {len(errors)} error(s), e.g. {errors[0]}")
    for source, code in (result.get("cloudtrail", {}).get("failed") or {}).items():
        left.append(f"CloudTrail {source}: {code}")
    return left


def tick(rt: Runtime, *, reconcile_too: bool = True, collect: bool = True) -> dict[str, Any]:
    """Reap everything due, reconcile, collect CloudTrail; returns a summary fit for logs or JSON."""
    reaped = reap(rt)
    result: dict[str, Any] = {"reaper": {k: v for k, v in asdict(reaped).items() if k != "statuses"}}
    if reconcile_too:
        result["reconciler"] = asdict(reconcile(rt))
    if collect:
        from access.audit.collector import collector_tick

        result["cloudtrail"] = collector_tick(rt)
    return result
