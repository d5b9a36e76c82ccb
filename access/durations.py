"""Durations as people type them: `30m`, `1h`, `1h30m`, `90s`, `2d`."""

from __future__ import annotations

import re
from datetime import timedelta

from access.errors import InvalidInput

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"([0-9]{1,7})([dhms])")  # ASCII digits: \d also takes fullwidth and Arabic-Indic ones


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text into a positive timedelta.

    Raises:
        InvalidInput: empty, unparseable, zero or negative input.
    """
    raw = text.strip().lower()
    if not raw:
        raise InvalidInput("duration is empty; use a form like 30m, 1h or 1h30m")
    if raw.startswith("-"):
        raise InvalidInput(f"duration {text!r} is negative; use a form like 30m, 1h or 1h30m")
    pos = 0
    total = 0
    seen: set[str] = set()
    for match in _PART.finditer(raw):
        if match.start() != pos or match.group(2) in seen:
            break
        seen.add(match.group(2))
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or not seen:
        raise InvalidInput(f"cannot read duration {text[:40]!r}; use a form like 30m, 1h or 1h30m")
    if total <= 0:
        raise InvalidInput(f"duration {text[:40]!r} is zero; use a form like 30m, 1h or 1h30m")
    return timedelta(seconds=total)


def format_duration(value: timedelta | float) -> str:
    """The inverse of `parse_duration`, for messages: 5400 s -> `1h30m`."""
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
