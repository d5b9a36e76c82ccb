"""The demo estate and the foreground server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from sandbox.aws.seed import seed_estate
from sandbox.aws.server import AwsSandbox


def test_seed_builds_two_vpcs_with_endpoints_instances_and_people(client_for) -> None:
    with AwsSandbox() as sandbox:
        estate = seed_estate(sandbox)
        ec2 = client_for(sandbox, "ec2")

        endpoints = ec2.describe_instance_connect_endpoints()["InstanceConnectEndpoints"]
        assert {e["VpcId"] for e in endpoints} == set(estate.vpc_ids.values())
        assert {e.endpoint_id for e in estate.endpoints.values()} == {
            e["InstanceConnectEndpointId"] for e in endpoints
        }
        web = estate.instance("web-1")
        assert web.private_ip.startswith("10.0.")
        assert estate.instance("dev-box").private_ip.startswith("10.1.")
        with pytest.raises(ValueError):
            estate.instance("worker")
        described = ec2.describe_instances(InstanceIds=[web.instance_id])
        assert described["Reservations"][0]["Instances"][0]["InstanceType"] == "t3.micro"
        assert set(estate.role_arns) == {"alice", "bob", "carol"}
        assert all(":role/eice/" in arn for arn in estate.role_arns.values())
        assert estate.user_access_key_id


def test_module_prints_one_ready_line_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.aws"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["url"].startswith("http://127.0.0.1:")
        assert ready["env"]["AWS_ENDPOINT_URL"] == ready["url"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
