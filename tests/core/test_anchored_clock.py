"""The bot's clock follows AWS's time (its `Date` header), not this machine's wall clock, so a
wall-clock jump neither revokes grants early nor late (found by `eice chaos --scenario clock`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from access.aws.calls import AwsClients
from access.clock import AnchoredClock, FixedClock, SystemClock
from sandbox.aws.account import bot_session
from sandbox.aws.server import AwsSandbox


def test_a_wall_clock_an_hour_ahead_is_corrected_by_the_first_aws_answer(aws: AwsSandbox) -> None:
    session = bot_session()
    clients = AwsClients(session)
    clock = AnchoredClock(SystemClock(offset_s=3600))
    clients.on_server_time(clock.observe)
    clock.calibrate = lambda: clients.client("sts", "us-east-1").get_caller_identity()
    skew = abs((clock.now() - datetime.now(UTC)).total_seconds())
    assert skew < 3, f"clock still {skew:.0f}s off after calibrating against AWS"


def test_a_jump_of_the_base_clock_does_not_move_an_anchored_clock() -> None:
    base = FixedClock(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    clock = AnchoredClock(base)
    assert clock.now() == base.now()  # no reading yet: the base it is
    clock.observe(datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC))
    base.advance(3600)  # the machine's clock jumps an hour forward
    assert abs(clock.now() - datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)) < timedelta(seconds=1)
    clock.observe(datetime(2026, 1, 1, 12, 0, 6, tzinfo=UTC))  # within tolerance: no re-anchor
    clock.observe(datetime(2026, 1, 1, 13, 0, 0, tzinfo=UTC))  # AWS says otherwise: follow AWS
    assert abs(clock.now() - datetime(2026, 1, 1, 13, 0, 0, tzinfo=UTC)) < timedelta(seconds=1)
