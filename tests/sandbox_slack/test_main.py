"""`python -m sandbox.slack` serves until SIGTERM and prints where it listens."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from slack_sdk import WebClient


def test_module_prints_url_and_token_then_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.slack", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["url"].startswith("http://127.0.0.1:")
        client = WebClient(token=ready["token"], base_url=ready["url"] + "/api/")
        assert client.auth_test()["ok"]
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
