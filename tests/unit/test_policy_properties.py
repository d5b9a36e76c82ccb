"""The grant policy, evaluated the way IAM does (sandbox evaluator), over generated windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from access.clock import iso
from access.grants.policy import (
    OPEN_TUNNEL,
    SEND_SSH_PUBLIC_KEY,
    GrantScope,
    grant_policy,
    max_tunnel_duration_at,
    truncate_to_second,
)
from sandbox.aws.iam_eval import evaluate

BASE = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
IP = "10.0.1.4"


def scope(start: datetime, duration_s: int, overshoot_s: int) -> GrantScope:
    return GrantScope(
        account_id="123456789012",
        region="us-east-1",
        instance_id="i-0123456789abcdef0",
        endpoint_id="eice-0123456789abcdef0",
        private_ip=IP,
        port=22,
        os_user="ec2-user",
        starts_at=start,
        expires_at=start + timedelta(seconds=duration_s),
        overshoot_s=overshoot_s,
    )


def tunnel_allowed(
    s: GrantScope,
    at: datetime,
    *,
    max_s: int | None,
    port: int = 22,
    ip: str = IP,
    endpoint: str | None = None,
) -> bool:
    ctx: dict[str, str] = {
        "ec2-instance-connect:remotePort": str(port),
        "ec2-instance-connect:privateIpAddress": ip,
        "aws:CurrentTime": iso(at),
    }
    if max_s is not None:
        ctx["ec2-instance-connect:maxTunnelDuration"] = str(max_s)
    resource = s.endpoint_arn if endpoint is None else s.endpoint_arn.replace(s.endpoint_id, endpoint)
    return evaluate([grant_policy(s)], action=OPEN_TUNNEL, resource=resource, context=ctx).allowed


windows = st.tuples(
    st.integers(min_value=0, max_value=86_400),  # start offset
    st.integers(min_value=60, max_value=8 * 3600),  # duration
    st.integers(min_value=30, max_value=1800),  # overshoot
)


@settings(max_examples=150, deadline=None)
@given(windows, st.floats(min_value=0, max_value=1), st.integers(min_value=1, max_value=3600))
def test_no_tunnel_outlives_the_grant_by_more_than_the_overshoot(
    w: tuple[int, int, int], frac: float, asked: int
) -> None:
    start_off, duration, overshoot = w
    s = scope(BASE + timedelta(seconds=start_off), duration, overshoot)
    at = truncate_to_second(s.starts_at + timedelta(seconds=int(frac * (duration - 1))))
    if tunnel_allowed(s, at, max_s=asked):
        assert at + timedelta(seconds=asked) <= s.expires_at + timedelta(seconds=overshoot)


@settings(max_examples=150, deadline=None)
@given(windows, st.floats(min_value=0, max_value=1))
def test_a_client_asking_for_the_time_left_is_allowed(w: tuple[int, int, int], frac: float) -> None:
    start_off, duration, overshoot = w
    s = scope(BASE + timedelta(seconds=start_off), duration, overshoot)
    at = truncate_to_second(s.starts_at + timedelta(seconds=int(frac * (duration - 1))))
    left = min(3600, int((s.expires_at - at).total_seconds()))
    assert tunnel_allowed(s, at, max_s=left)
    assert max_tunnel_duration_at(s, at) >= left


@settings(max_examples=100, deadline=None)
@given(windows, st.floats(min_value=0, max_value=1), st.integers(min_value=1, max_value=65535))
def test_anything_else_is_denied(w: tuple[int, int, int], frac: float, other_port: int) -> None:
    start_off, duration, overshoot = w
    s = scope(BASE + timedelta(seconds=start_off), duration, overshoot)
    at = truncate_to_second(s.starts_at + timedelta(seconds=int(frac * (duration - 1))))
    ok = min(3600, int((s.expires_at - at).total_seconds()))
    if other_port != 22:
        assert not tunnel_allowed(s, at, max_s=ok, port=other_port)
    assert not tunnel_allowed(s, at, max_s=ok, ip="10.0.1.5")
    assert not tunnel_allowed(s, at, max_s=ok, endpoint="eice-0fffffffffffffff0")
    assert not tunnel_allowed(s, at, max_s=None)  # a policy below 3600 needs the key sent
    assert not tunnel_allowed(s, s.expires_at, max_s=1)
    assert not tunnel_allowed(s, s.expires_at + timedelta(hours=2), max_s=1)
    assert not tunnel_allowed(s, s.starts_at - timedelta(seconds=1), max_s=1)


@settings(max_examples=60, deadline=None)
@given(
    windows,
    st.floats(min_value=0, max_value=1),
    st.sampled_from(["root", "ubuntu", "admin", "EC2-USER"]),
)
def test_send_ssh_public_key_only_for_the_os_user_inside_the_window(
    w: tuple[int, int, int], frac: float, other: str
) -> None:
    start_off, duration, overshoot = w
    s = scope(BASE + timedelta(seconds=start_off), duration, overshoot)
    at = truncate_to_second(s.starts_at + timedelta(seconds=int(frac * (duration - 1))))

    def allowed(user: str, when: datetime, instance: str = s.instance_arn) -> bool:
        ctx = {"ec2:osuser": user, "aws:CurrentTime": iso(when)}
        return evaluate([grant_policy(s)], action=SEND_SSH_PUBLIC_KEY, resource=instance, context=ctx).allowed

    assert allowed("ec2-user", at)
    assert not allowed(other, at)
    assert not allowed("ec2-user", s.expires_at)
    assert not allowed("ec2-user", at, s.instance_arn.replace("i-0123456789abcdef0", "i-0123456789abcdef1"))
