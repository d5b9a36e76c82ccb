"""An injectable clock: every "now" in the domain comes from here, timezone-aware UTC."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock UTC, optionally shifted by `EICE_CLOCK_OFFSET_S` (the chaos harness's clock jump)."""

    def __init__(self, offset_s: float | None = None) -> None:
        if offset_s is None:
            offset_s = float(os.environ.get("EICE_CLOCK_OFFSET_S", "0") or 0)
        self.offset = timedelta(seconds=offset_s)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class AnchoredClock:
    """UTC read from a trusted source (AWS's `Date` header), carried forward by the monotonic clock.

    A step of this machine's wall clock (NTP, an operator, a resumed VM) then moves neither
    expiry decisions nor recorded times: grants end by AWS's time, which is also the time
    their policy conditions are checked against. Until the first reading, `base` is used;
    `calibrate` (one cheap AWS call) is tried at most once a minute until a reading arrives.
    """

    RETRY_CALIBRATION_S = 60.0

    def __init__(self, base: Clock | None = None, *, tolerance_s: float = 2.0) -> None:
        self.base = base or SystemClock()
        self.tolerance_s = tolerance_s
        self.calibrate: Callable[[], object] | None = None
        self._anchor: tuple[datetime, float] | None = None
        self._tried_at: float | None = None
        self._lock = threading.Lock()

    def observe(self, server_now: datetime) -> None:
        """A trusted reading, whole seconds rounded down (the true time is in [reading, reading + 1 s)).

        Behind the reading, the anchor moves up to it (so readings refine it, never forward of
        the true time); ahead of it by more than 1 s + the tolerance, it is reset.
        """
        mono = time.monotonic()
        reading = as_utc(server_now)
        with self._lock:
            if self._anchor is not None:
                ahead = (
                    self._anchor[0] + timedelta(seconds=mono - self._anchor[1]) - reading
                ).total_seconds()
                if 0 <= ahead <= 1 + self.tolerance_s:
                    return
            self._anchor = (reading, mono)

    def now(self) -> datetime:
        if self._anchor is None and self.calibrate is not None:
            mono = time.monotonic()
            if self._tried_at is None or mono - self._tried_at > self.RETRY_CALIBRATION_S:
                self._tried_at = mono
                # Its answer's Date header arrives through observe(); AWS unreachable: the
                # wall clock it is, for now.
                with contextlib.suppress(Exception):
                    self.calibrate()
        anchor = self._anchor
        if anchor is None:
            return self.base.now()
        return anchor[0] + timedelta(seconds=time.monotonic() - anchor[1])


class FixedClock:
    """A clock that only moves when told to (for pure tests)."""

    def __init__(self, at: datetime) -> None:
        self.at = as_utc(at)

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def as_utc(value: datetime) -> datetime:
    """Return `value` as an aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, to the second (the form IAM date conditions take)."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 timestamp; a value without an offset is taken to be UTC."""
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from exc
    return as_utc(parsed)
