"""Named crash points for the crash-safety tests and `eice chaos`.

`EICE_FAILPOINTS="after_put_before_commit"` (comma-separated; `name:N` fires on the
Nth hit; `name@S` waits S seconds first, holding that thread while the rest of the
process carries on) makes the process die with `os._exit` when it reaches that point,
exactly as a SIGKILL would: no cleanup, no commit.
"""

from __future__ import annotations

import os
import threading
import time

_hits: dict[str, int] = {}
_lock = threading.Lock()


def _armed() -> dict[str, tuple[int, float]]:
    """{name: (the hit that fires, seconds to wait before dying)}"""
    spec = os.environ.get("EICE_FAILPOINTS", "")
    armed: dict[str, tuple[int, float]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        item, _, wait = item.partition("@")
        name, _, nth = item.partition(":")
        try:
            delay = max(0.0, float(wait)) if wait else 0.0
        except ValueError:
            delay = 0.0
        armed[name] = (int(nth) if nth.isdigit() else 1, delay)
    return armed


def failpoint(name: str) -> None:
    """Die here if `name` is armed and this is its Nth hit."""
    armed = _armed()
    if name not in armed:
        return
    nth, delay = armed[name]
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        hit = _hits[name]
    if hit == nth:
        time.sleep(delay)
        os.write(2, f"failpoint {name}: exiting\n".encode())
        os._exit(77)
