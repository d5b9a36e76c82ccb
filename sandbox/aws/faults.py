"""Fault injection and call counting for the AWS sandbox, settable while it runs."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Error codes a refused role/user may be answered with, and their HTTP status.
REFUSAL_STATUS = {"AccessDenied": 403, "UnmodifiableEntity": 400}


@dataclass(frozen=True)
class LookupCall:
    """One LookupEvents call as the sandbox saw it."""

    at: float  # time.time() when it arrived
    region: str
    accepted: bool  # False when answered ThrottlingException


@dataclass
class CallCounters:
    """Per-action call counts (``counts["iam:PutRolePolicy"]``) and LookupEvents calls."""

    counts: Counter[str] = field(default_factory=Counter)
    lookup_events_calls: list[LookupCall] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "lookup_events_calls": [
                {"at": c.at, "region": c.region, "accepted": c.accepted} for c in self.lookup_events_calls
            ],
        }


class FaultConfig:
    """What the sandbox does wrong on purpose. Thread-safe; every field may change at run time."""

    _FIELDS = (
        "iam_throttle_rate",
        "iam_error_rate",
        "iam_latency_s",
        "refused_roles",
        "lookup_events_rate_per_s",
        "lookup_refused_regions",
        "iam_put_delay_s",
    )

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.iam_throttle_rate = 0.0
        self.iam_error_rate = 0.0
        self.iam_latency_s = 0.0
        self.refused_roles: dict[str, str] = {}
        # CloudTrail's documented LookupEvents limit, per account and region.
        self.lookup_events_rate_per_s = 2.0
        # Regions where LookupEvents answers AccessDenied (an SCP that denies a region).
        self.lookup_refused_regions: list[str] = []
        # Seconds a policy put waits before IAM takes it (a put still in flight).
        self.iam_put_delay_s = 0.0
        self.counters = CallCounters()
        self._random = random.Random()

    @property
    def counts(self) -> Counter[str]:
        return self.counters.counts

    def seed(self, seed: int) -> None:
        """Make the rate-based faults reproducible."""
        with self._lock:
            self._random.seed(seed)

    def update(self, values: dict[str, Any]) -> None:
        """Set fields from a JSON-like mapping (unknown keys raise ValueError)."""
        unknown = set(values) - set(self._FIELDS)
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        with self._lock:
            for name, value in values.items():
                if name == "refused_roles":
                    bad = {v for v in dict(value).values() if v not in REFUSAL_STATUS}
                    if bad:
                        raise ValueError(f"refusal codes must be one of {sorted(REFUSAL_STATUS)}")
                    self.refused_roles = dict(value)
                elif name == "lookup_refused_regions":
                    self.lookup_refused_regions = [str(region) for region in value]
                else:
                    setattr(self, name, float(value))

    def clear(self) -> None:
        """Back to no faults; counters are kept (see reset_counters)."""
        with self._lock:
            self.iam_throttle_rate = 0.0
            self.iam_error_rate = 0.0
            self.iam_latency_s = 0.0
            self.refused_roles = {}
            self.lookup_events_rate_per_s = 2.0
            self.lookup_refused_regions = []
            self.iam_put_delay_s = 0.0

    def reset_counters(self) -> None:
        with self._lock:
            self.counters = CallCounters()

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {name: getattr(self, name) for name in self._FIELDS}

    def count(self, action: str) -> None:
        with self._lock:
            self.counters.counts[action] += 1

    def count_lookup(self, region: str, *, accepted: bool) -> None:
        with self._lock:
            self.counters.counts["cloudtrail:LookupEvents"] += 1
            self.counters.lookup_events_calls.append(LookupCall(time.time(), region, accepted))

    def iam_fault(self) -> str | None:
        """Draw the fault for one IAM call: "Throttling", "ServiceFailure" or None."""
        with self._lock:
            draw = self._random.random()
            if draw < self.iam_throttle_rate:
                return "Throttling"
            if draw < self.iam_throttle_rate + self.iam_error_rate:
                return "ServiceFailure"
            return None

    def refusal_for(self, name: str | None) -> str | None:
        with self._lock:
            return self.refused_roles.get(name) if name else None
