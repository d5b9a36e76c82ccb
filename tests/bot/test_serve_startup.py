"""`eice serve` refuses to start, with one line and before anything runs or is written,
when it could not do its job: a port taken, a token Slack refuses, a token missing."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from access.migrate import upgrade
from sandbox.aws.server import AwsSandbox
from sandbox.slack.server import SlackSandbox
from tests.bot.harness import bot_env, free_port


@pytest.fixture
def env(aws: AwsSandbox, slack: SlackSandbox, config_path: Path, tmp_path: Path) -> dict[str, str]:
    db_url = f"sqlite:///{tmp_path / 'bot.sqlite'}"
    upgrade(db_url)
    return {**bot_env(aws, slack, db_url, config_path), "EICE_INBOX_DIR": str(tmp_path / "inbox")}


def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "access.cli.main", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused(done: subprocess.CompletedProcess[str], said: str) -> None:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == f"eice serve: {said}"


def test_a_taken_port_is_refused_before_anything_starts(env: dict[str, str], tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = serve(env, "--http", "--port", str(port))
    refused(done, f"cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "catch-up" not in done.stderr  # the scheduler never ran
    assert not (tmp_path / "inbox").exists()


def test_a_bot_token_slack_refuses_stops_start_up(env: dict[str, str], tmp_path: Path) -> None:
    done = serve({**env, "SLACK_BOT_TOKEN": "xoxb-not-the-right-one"}, "--http", "--port", str(free_port()))
    refused(done, "Slack refused SLACK_BOT_TOKEN: invalid_auth")
    assert not (tmp_path / "inbox").exists()


def test_an_app_token_slack_refuses_stops_socket_mode(env: dict[str, str], tmp_path: Path) -> None:
    done = serve({**env, "SLACK_APP_TOKEN": "xapp-1-not-the-right-one"}, "--port", str(free_port()))
    refused(done, "Slack refused SLACK_APP_TOKEN: invalid_auth")
    assert "catch-up" not in done.stderr  # refused before the scheduler ran
    assert not (tmp_path / "inbox").exists()


def test_a_missing_bot_token_writes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    without = {k: v for k, v in env.items() if k != "SLACK_BOT_TOKEN"}
    done = serve(without, "--http", "--port", str(free_port()))
    refused(done, "SLACK_BOT_TOKEN is not set")
    assert not (tmp_path / "inbox").exists()
