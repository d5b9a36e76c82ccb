"""`eice doctor` as a subprocess against the sandbox: table, --json, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from sandbox.aws.seed import Estate
from sandbox.aws.server import AwsSandbox
from tests.preflight.conftest import build_site


def doctor(sandbox: AwsSandbox, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        **sandbox.env(),
    }
    return subprocess.run(
        [sys.executable, "-m", "access.cli.main", "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthy_instance_prints_a_table_and_exits_0(sandbox: AwsSandbox, estate: Estate) -> None:
    instance = estate.instance("web-1")
    result = doctor(sandbox, "web-1", "--principal", estate.role_arns["alice"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{instance.instance_id} in us-east-1 via eice-")
    assert any(line.startswith("OK    instance-sg-ingress ") for line in lines)
    assert lines[-1] == "verdict: reachable"


def test_json_output_and_exit_1_on_failure(sandbox: AwsSandbox, estate: Estate, ec2: Any) -> None:
    site = build_site(ec2)
    site.revoke_endpoint_egress()
    result = doctor(sandbox, site.instance_id, "--json", "--region", "us-east-1")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "failure"
    assert report["verdict"].startswith(f"will fail: endpoint SG {site.endpoint_sg}")
    failed = [c for c in report["checks"] if c["status"] == "failure"]
    assert [c["name"] for c in failed] == ["endpoint-sg-egress"]
    assert failed[0]["fix"].startswith("aws ec2 authorize-security-group-egress")


def test_table_shows_the_fix_under_a_failure(sandbox: AwsSandbox, ec2: Any) -> None:
    site = build_site(ec2)
    ec2.stop_instances(InstanceIds=[site.instance_id])
    result = doctor(sandbox, site.instance_id)
    assert result.returncode == 1
    assert f"fix: aws ec2 start-instances --instance-ids {site.instance_id}" in result.stdout


def test_warnings_only_exit_0(sandbox: AwsSandbox, ec2: Any) -> None:
    site = build_site(ec2, port=8080)
    result = doctor(sandbox, site.instance_id, "--port", "8080", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "warnings"
    warned = {c["name"] for c in report["checks"] if c["status"] == "warning"}
    assert warned == {"port", "principal"}


def test_bad_input_exits_2(sandbox: AwsSandbox) -> None:
    for args in (("i-nothex!",), ("i-0123456789abcdef0", "--port", "0")):
        result = doctor(sandbox, *args)
        assert result.returncode == 2, (args, result.stdout)
        assert result.stderr.startswith("eice doctor: ")


def test_ambiguous_name_exits_2(sandbox: AwsSandbox, estate: Estate) -> None:
    result = doctor(sandbox, "worker")
    assert result.returncode == 2
    assert "use the instance ID" in result.stderr


def test_unknown_instance_exits_1(sandbox: AwsSandbox) -> None:
    result = doctor(sandbox, "i-0123456789abcdef0", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["verdict"].startswith("will fail: no instance")
