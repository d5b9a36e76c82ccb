"""How long a tunnel may live: `maxTunnelDuration` from a grant's expiry or a flag."""

from __future__ import annotations

import math
from datetime import datetime

from access.clock import as_utc
from access.errors import InvalidInput

MAX_TUNNEL_S = 3600


def max_tunnel_duration(*, expires_at: datetime | None, seconds: int | None, now: datetime) -> int | None:
    """The value to send, or None to leave it out (EICE then uses 3600).

    From an expiry it is the whole seconds left, capped at 3600: the grant policy allows
    at least that much in whichever slice `now` falls, so it is never refused for length.
    """
    if seconds is not None:
        if not 1 <= seconds <= MAX_TUNNEL_S:
            raise InvalidInput(f"--max-tunnel-duration must be 1..{MAX_TUNNEL_S} seconds")
        return seconds
    if expires_at is None:
        return None
    left = math.floor((as_utc(expires_at) - as_utc(now)).total_seconds())
    if left < 1:
        raise InvalidInput(f"the grant expired at {as_utc(expires_at):%Y-%m-%d %H:%M:%S} UTC")
    return min(left, MAX_TUNNEL_S)
