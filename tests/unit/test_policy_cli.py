"""`eice policy`: the dry run prints exactly the document, as JSON, on stdout."""

from __future__ import annotations

import json
import subprocess
import sys

from access.clock import parse_iso
from access.grants.policy import GrantScope, grant_policy, policy_owner

ARGS = [
    "--instance-id", "i-0123456789abcdef0", "--endpoint-id", "eice-0123456789abcdef0",
    "--private-ip", "10.0.1.4", "--region", "us-east-1", "--account", "123456789012",
    "--start", "2026-11-28T18:00:00Z", "--expires", "2026-11-28T18:30:00Z",
]  # fmt: skip


def eice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "access.cli.main", *args], capture_output=True, text=True, timeout=60
    )


def test_policy_prints_the_document_and_nothing_else() -> None:
    result = eice("policy", *ARGS, "--port", "2222", "--os-user", "ubuntu", "--overshoot", "120")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    expected = grant_policy(
        GrantScope(
            account_id="123456789012", region="us-east-1", instance_id="i-0123456789abcdef0",
            endpoint_id="eice-0123456789abcdef0", private_ip="10.0.1.4", port=2222, os_user="ubuntu",
            starts_at=parse_iso("2026-11-28T18:00:00Z"), expires_at=parse_iso("2026-11-28T18:30:00Z"),
            overshoot_s=120,
        )
    )  # fmt: skip
    assert document == expected
    assert policy_owner(document) is None  # no --owner, no owner Sid


def test_policy_with_owner_names_the_installation_in_the_first_statement_only() -> None:
    result = eice("policy", *ARGS, "--owner", "0123456789abcdef")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["Statement"][0]["Sid"] == "EiceGrantOf0123456789abcdef"
    assert [s for s in document["Statement"][1:] if "Sid" in s] == []
    assert policy_owner(document) == "0123456789abcdef"
    bad = eice("policy", *ARGS, "--owner", "not-alnum!")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "must be 1-32 letters or digits" in bad.stderr


def test_policy_with_allow_describe_adds_the_describe_calls_for_the_grants_window() -> None:
    plain = json.loads(eice("policy", *ARGS).stdout)
    result = eice("policy", *ARGS, "--allow-describe")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    [added] = [s for s in document["Statement"] if s not in plain["Statement"]]
    assert added["Action"] == ["ec2:DescribeInstances", "ec2:DescribeInstanceConnectEndpoints"]
    assert added["Condition"]["DateLessThan"]["aws:CurrentTime"] == "2026-11-28T18:30:00Z"


def test_policy_refuses_bad_input_with_a_clear_line() -> None:
    bad = eice("policy", *ARGS[:-2], "--expires", "2026-11-28T17:00:00Z")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "--expires must be after --start" in bad.stderr
    bad = eice("policy", *[a if a != "10.0.1.4" else "10.0.1" for a in ARGS])
    assert bad.returncode == 2 and "does not appear to be an IPv4" in bad.stderr
    for flags, said in (
        (["--os-user", "Root;rm"], "--os-user 'Root;rm' is not a valid OS user name"),
        (["--overshoot", "99999"], "--overshoot 99999 is not between 1 and 3600"),
        (["--port", "0"], "--port 0 is not between 1 and 65535"),
        (["--principal-arn", "bogus"], "--principal-arn 'bogus' is not an IAM role or user ARN"),
        (["--region", "moon-1"], "--region 'moon-1' is not an AWS region"),
    ):
        bad = eice("policy", *ARGS, *flags)
        assert bad.returncode == 2 and bad.stdout == "" and said in bad.stderr, (flags, bad.stderr)
