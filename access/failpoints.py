"""Named crash points for the crash-safety tests and `eice chaos`.

`EICE_FAILPOINTS="after_put_before_commit"` (comma-separated; `name:N` fires on the
Nth hit) makes the process die with `os._exit` when it reaches that point, exactly as
a SIGKILL would: no cleanup, no commit.
"""

from __future__ import annotations

import os
import threading

_hits: dict[str, int] = {}
_lock = threading.Lock()


def _armed() -> dict[str, int]:
    spec = os.environ.get("EICE_FAILPOINTS", "")
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition(":")
        armed[name] = int(nth) if nth.isdigit() else 1
    return armed


def failpoint(name: str) -> None:
    """Die here if `name` is armed and this is its Nth hit."""
    armed = _armed()
    if name not in armed:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        hit = _hits[name]
    if hit == armed[name]:
        os.write(2, f"failpoint {name}: exiting\n".encode())
        os._exit(77)
