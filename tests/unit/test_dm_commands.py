"""The DM's ready-made `aws` commands ask, when run, for a tunnel duration the grant allows."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from access.grants.models import Grant
from bot.blocks import access_commands


def _grant(expires_in: timedelta) -> Grant:
    return Grant(
        instance_id="i-0123456789abcdef0",
        os_user="ec2-user",
        endpoint_id="eice-0123456789abcdef0",
        region="us-east-1",
        port=22,
        private_ip="10.0.1.4",
        expires_at=datetime.now(UTC) + expires_in,
    )


def _asked(command: str, shell: str) -> int:
    """The tunnel duration the command asks for when `shell` runs it."""
    found = re.search(r"(?:--max-tunnel-duration |maxTunnelDuration=)(\$\(\( .*? : 3600 \)\))", command)
    assert found is not None, command
    out = subprocess.run([shell, "-c", f"echo {found.group(1)}"], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize(("expires_in", "cap"), [(timedelta(minutes=25), 1500), (timedelta(hours=3), 3600)])
def test_the_aws_commands_ask_for_the_time_left_when_run(shell: str, expires_in: timedelta, cap: int) -> None:
    grant = _grant(expires_in)
    _eice, ssh, tunnel = access_commands(grant)
    for command in (ssh, tunnel):
        shlex.split(command)  # one command line a shell can read
        left = int(grant.expires_at.timestamp() - time.time())
        assert min(left, 3600) - 2 <= _asked(command, shell) <= cap
