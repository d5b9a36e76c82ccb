"""`eice serve` in Socket Mode (SLACK_APP_TOKEN set, no --http), against the Slack stand-in's
Socket Mode endpoint: commands arrive over the socket and are acked there, the whole request
flow runs, `/healthz` and `/metrics` answer on --port, and SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import requests

from access.db import Database
from access.grants.models import Grant
from access.migrate import upgrade
from sandbox.aws.seed import Estate
from sandbox.aws.server import AwsSandbox
from sandbox.slack.driver import SlackDriver
from sandbox.slack.server import SlackSandbox
from tests.bot.harness import SIGNING_SECRET, bot_env, eventually, free_port


def test_socket_mode_serves_commands_health_and_metrics(
    aws: AwsSandbox, slack: SlackSandbox, estate: Estate, config_path: Path, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'socket.sqlite'}"
    upgrade(db_url)
    port = free_port()
    env = {**bot_env(aws, slack, db_url, config_path), "SLACK_APP_TOKEN": slack.app_token}
    log_path = tmp_path / "bot.log"
    with open(log_path, "wb") as log:
        bot = subprocess.Popen(
            [sys.executable, "-m", "access.cli.main", "serve", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    db = Database(db_url)
    try:

        def healthy() -> bool:
            assert bot.poll() is None, log_path.read_text()[-3000:]
            try:
                return requests.get(url + "/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        eventually(healthy, timeout=30)
        assert slack.socket.wait_connected(30), log_path.read_text()[-3000:]
        opened = [c for c in slack.calls if c.method == "apps.connections.open"]
        assert opened and opened[-1].response["ok"]

        dev = next(i for i in estate.instances if i.name == "dev-box")
        driver = SlackDriver(bot_url="http://127.0.0.1:9", signing_secret=SIGNING_SECRET, slack=slack)
        ack = driver.command_over_socket("U0CAROL", f"request {dev.instance_id} 15m over the socket")
        assert ack["envelope_id"]  # acknowledged over the socket, within Slack's 3 seconds

        def granted() -> Grant | None:
            with db.transaction() as session:
                return session.query(Grant).filter_by(requester_id="U0CAROL", status="active").first()

        grant = eventually(granted, timeout=30)
        assert grant.instance_id == dev.instance_id
        eventually(lambda: [m for m in slack.dms("U0CAROL") if grant.id in str(m.blocks)])

        metrics = requests.get(url + "/metrics", timeout=5)
        assert metrics.status_code == 200
        # the command was counted and its ack timed, as over HTTP
        assert 'eice_slack_requests_total{kind="command",status="200"} 1.0' in metrics.text
        assert "eice_ack_seconds_count 1.0" in metrics.text
        # Slack's events come over the socket: there is no HTTP events endpoint to reach.
        assert requests.post(url + "/slack/events", data=b"{}", timeout=5).status_code == 404
    finally:
        bot.send_signal(signal.SIGTERM)
        code = bot.wait(30)
        db.dispose()
    assert code == 0, log_path.read_text()[-3000:]
    assert "Traceback" not in log_path.read_text()
