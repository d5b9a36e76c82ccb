"""The DM's ready-made `aws` commands ask, when run, for a tunnel duration the grant allows,
and the DM says when one of them needs more than the grant gives."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from access.access_requests.models import AccessRequest
from access.grants.models import Grant
from bot.blocks import NO_DESCRIBE, access_commands, access_dm


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


@pytest.mark.parametrize("allowed", [False, True])
def test_the_dm_says_when_the_aws_ssh_command_needs_more_than_the_grant(allowed: bool) -> None:
    grant = _grant(timedelta(minutes=30))
    grant.id, grant.allow_describe = "g-test", allowed
    request = AccessRequest(instance_id=grant.instance_id, instance_name="web-1", endpoint_dns="")
    _text, blocks = access_dm(grant, request, max_tunnel_s=1800)
    context = [block for block in blocks if block["type"] == "context"]
    notes = [element["text"] for block in context for element in block["elements"]]
    assert (NO_DESCRIBE in notes) is not allowed  # with allow_describe the grant itself covers it
    assert "aws ec2-instance-connect ssh" in json.dumps(blocks)  # DESIGN: both AWS CLI commands, always
