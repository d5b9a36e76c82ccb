"""The bot's test world: AWS and Slack sandboxes in-process, `eice serve --http` as a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from sqlalchemy import text, update

from access.access_requests.models import AccessRequest
from access.config.loader import load_config
from access.config.permissions import Actor
from access.grants import revoke as grant_revoke
from access.grants import service as grant_service
from access.runtime import Runtime
from access.settings import Settings
from sandbox.aws.account import bot_client
from sandbox.aws.seed import Estate
from sandbox.aws.server import AwsSandbox
from sandbox.bot_env import bot_env as sandbox_bot_env
from sandbox.slack.driver import SlackDriver
from sandbox.slack.server import SlackSandbox

SIGNING_SECRET = "sandbox-signing-secret-0123456789"
APPROVALS = "C0APPROVALS"
AUDIT = "C0AUDIT"
DEV_AUDIT = "C0DEVAUDIT"  # the dev rule's own audit channel
T = TypeVar("T")


def config_toml(estate: Estate) -> str:
    roles = estate.role_arns
    return f"""
[defaults]
approvers = ["U0BOB", "S0ONCALL"]
approvals_channel = "{APPROVALS}"
audit_channel = "{AUDIT}"
admins = ["U0ADMIN"]
approval_timeout = "10m"

[[rules]]
name = "slow-approvers"
match = {{ tags = {{ Name = "worker", env = "prod" }} }}
approval_timeout = "2s"
approvals_required = 1

[[rules]]
name = "db"
match = {{ tags = {{ Name = "db-1" }} }}
approvals_required = 1
os_user = "postgres"

[[rules]]
name = "prod"
match = {{ tags = {{ env = "prod" }} }}
approvals_required = 2

[[rules]]
name = "dev"
match = {{ tags = {{ env = "dev" }} }}
auto_approve = true
audit_channel = "{DEV_AUDIT}"

[principals]
U0ALICE = "{roles["alice"]}"
U0BOB = "{roles["bob"]}"
U0CAROL = "{roles["carol"]}"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(check: Callable[[], T], *, timeout: float = 15.0, every: float = 0.1) -> T:
    """Poll until `check` returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s (last: {value!r})")
        time.sleep(every)
        value = check()
    return value


def bot_env(aws: AwsSandbox, slack: SlackSandbox, db_url: str, config: Path) -> dict[str, str]:
    return sandbox_bot_env(
        aws,
        slack,
        db_url=db_url,
        config=config,
        signing_secret=SIGNING_SECRET,
        EICE_REAPER_INTERVAL_S="0.5",
        EICE_LOG_LEVEL="WARNING",
    )


@dataclass
class World:
    """One running bot and what the tests use to drive and inspect it."""

    aws: AwsSandbox
    slack: SlackSandbox
    estate: Estate
    rt: Runtime
    url: str
    process: subprocess.Popen[bytes] | None
    log_path: Path | None
    config_path: Path | None = None

    @property
    def driver(self) -> SlackDriver:
        return SlackDriver(
            bot_url=self.url + "/slack/events", signing_secret=SIGNING_SECRET, slack=self.slack
        )

    def iam(self) -> Any:
        return bot_client("iam", self.aws.url)

    def policies(self, role: str) -> list[str]:
        return list(self.iam().list_role_policies(RoleName=role)["PolicyNames"])

    def card_for(self, request_id: str) -> Any:
        """The approval card whose buttons carry `request_id` or whose text names it."""
        for message in self.slack.messages(APPROVALS):
            if message.thread_ts is None and request_id in str(message.blocks):
                return message
        return None

    def request_row(self, **where: Any) -> AccessRequest | None:
        with self.rt.db.transaction() as s:
            q = s.query(AccessRequest).filter_by(**where).order_by(AccessRequest.created_at.desc())
            return q.first()

    def count(self, table: str) -> int:
        with self.rt.db.transaction() as s:
            return int(s.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

    def cleanup(self) -> None:
        """End every pending request and live grant so the next test starts clean."""
        with self.rt.db.transaction() as s:
            s.execute(
                update(AccessRequest)
                .where(AccessRequest.status == "pending")
                .values(status="cancelled", decided_by="test-cleanup")
            )
            live = [g.id for g in grant_service.live_grants(s)]
        admin = Actor("U0ADMIN")
        for grant_id in live:
            try:
                with self.rt.db.transaction() as s:
                    grant_revoke.request_revoke(s, self.rt, grant_id, admin, reason="test cleanup")
                grant_revoke.revoke_grant(self.rt, grant_id)
            except Exception:
                pass

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.rt.db.dispose()


def start_bot(
    aws: AwsSandbox,
    slack: SlackSandbox,
    estate: Estate,
    db_url: str,
    config: Path,
    tmp: Path,
    **extra_env: str,
) -> World:
    """Migrate the database, then run `eice serve --http` as a real subprocess (in a session
    of its own, so that a test can kill it with its workers; acked requests kept under
    `tmp`/inbox, so a server started again on the same `tmp` finds them)."""
    from access.migrate import upgrade

    upgrade(db_url)
    port = free_port()
    log_path = tmp / f"bot-{port}.log"
    env = {**bot_env(aws, slack, db_url, config), "EICE_INBOX_DIR": str(tmp / "inbox"), **extra_env}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "access.cli.main", "serve", "--http", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"eice serve exited: {log_path.read_text()[-3000:]}")
        try:
            return requests.get(url + "/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    eventually(healthy, timeout=30)
    settings = Settings(eice_database_url=db_url, eice_config=str(config))
    rt = Runtime.from_settings(settings, config=load_config(config))
    return World(aws, slack, estate, rt, url, process, log_path, config)
