"""One tick: what the EventBridge schedule (Lambda) or `eice tick` runs once."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from access.runtime import Runtime
from access.scheduler.reaper import reap
from access.scheduler.reconciler import reconcile


def tick(rt: Runtime, *, reconcile_too: bool = True) -> dict[str, Any]:
    """Reap everything due, then reconcile; returns a summary fit for logs or JSON."""
    reaped = reap(rt)
    result: dict[str, Any] = {"reaper": {k: v for k, v in asdict(reaped).items() if k != "statuses"}}
    if reconcile_too:
        result["reconciler"] = asdict(reconcile(rt))
    return result
