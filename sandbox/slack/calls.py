"""The Slack stand-in's call log and fault model: every request recorded, faults injected on demand."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Result = tuple[int, Any, dict[str, str]]


@dataclass
class Call:
    """One request the sandbox answered (``status`` 0: the connection was dropped)."""

    method: str
    params: dict[str, Any]
    at: float
    status: int
    response: Any


@dataclass
class Fault:
    """How the next ``remaining`` calls of one method fail."""

    status: int
    retry_after: int
    remaining: int
    error: str | None
    timeout_s: float | None
    after_effect: bool

    def response(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The failed answer: an error body, a 429 with ``Retry-After``, or a 5xx."""
        if self.error is not None and self.status in (200, 429):
            return 200, {"ok": False, "error": self.error}, {}
        if self.status == 429:
            body = {"ok": False, "error": "ratelimited"}
            return 429, body, {"Retry-After": str(self.retry_after)}
        return self.status, {"ok": False, "error": self.error or "internal_error"}, {}


class Dropped(Exception):
    """The fault asked for a hang: answer nothing and close the connection."""


class CallRecorder:
    """Mixin of ``SlackSandbox``: the recorded calls and the queued faults per method."""

    calls: list[Call]
    clock: Callable[[], float]
    _faults: dict[str, list[Fault]]
    _lock: threading.RLock
    _stopping: threading.Event

    def calls_to(self, method: str) -> list[Call]:
        """The recorded calls of one method, oldest first."""
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        error: str | None = None,
        timeout_s: float | None = None,
        after_effect: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        Args:
            method: a Web API method, or ``"response_url"`` for response URL posts.
            status: 429 (with ``Retry-After: retry_after``) or a 5xx.
            error: answer HTTP 200 ``{"ok": false, "error": error}`` (with status 429/200).
            timeout_s: hang this long, then close the connection without answering.
            after_effect: do what the call asks first, then fail (a lost response).
        """
        fault = Fault(status, retry_after, times, error, timeout_s, after_effect)
        with self._lock:
            self._faults.setdefault(method, []).append(fault)

    def _with_faults(self, method: str, effect: Callable[[], Result]) -> Result:
        with self._lock:
            faults = self._faults.get(method, [])
            fault = faults[0] if faults else None
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    faults.pop(0)
        if fault is None:
            return effect()
        if fault.after_effect:
            effect()
        if fault.timeout_s is not None:
            self._stopping.wait(fault.timeout_s)
            raise Dropped
        return fault.response()

    def _record(self, method: str, params: dict[str, Any], result: tuple) -> tuple:
        with self._lock:
            self.calls.append(Call(method, params, self.clock(), result[0], result[1]))
        return result
