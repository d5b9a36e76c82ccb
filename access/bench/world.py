"""The bench world: AWS and Slack sandboxes in this process, `eice serve --http` as a subprocess.

Only the CLI's `bench` command imports this (it pulls in `sandbox/`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from access.migrate import scratch_postgres, upgrade
from sandbox.aws.seed import Estate, seed_estate
from sandbox.aws.server import AwsSandbox
from sandbox.bot_env import bot_env
from sandbox.slack.driver import SlackDriver
from sandbox.slack.server import DEFAULT_USERS, SlackSandbox

SECRET = "bench-signing-secret"
APPROVER = "U0BOB"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, `q` in 0..1 (0.0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@contextmanager
def scratch_database(kind: str, folder: Path, postgres_url: str = DEFAULT_POSTGRES_URL) -> Iterator[str]:
    """A migrated throwaway database: a SQLite file in `folder`, or a new PostgreSQL database."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / f'bench-{uuid.uuid4().hex[:6]}.sqlite'}"
        upgrade(url)
        yield url
        return
    with scratch_postgres(postgres_url, "eice_bench") as url:
        yield url


@dataclass
class Sandboxes:
    """The AWS and Slack stand-ins and the estate seeded into them."""

    aws: AwsSandbox
    slack: SlackSandbox
    estate: Estate
    folder: Path
    extra_principals: dict[str, str] = field(default_factory=dict)

    def config_path(self) -> Path:
        """Write `eice.toml`: one approval by U0BOB, every Slack user mapped to a role."""
        principals = {
            "U0ALICE": self.estate.role_arns["alice"],
            "U0CAROL": self.estate.role_arns["carol"],
            **self.extra_principals,
        }
        lines = "\n".join(f'{user} = "{arn}"' for user, arn in principals.items())
        path = self.folder / "eice.toml"
        path.write_text(
            f'[defaults]\napprovers = ["{APPROVER}"]\napprovals_channel = "C0APPROVALS"\n'
            f'audit_channel = "C0AUDIT"\napprovals_required = 1\n\n[principals]\n{lines}\n'
        )
        return path

    @property
    def target(self) -> str:
        """The instance every benchmark request asks for (by ID: names repeat across seeds)."""
        return self.estate.instance("web-1").instance_id

    def driver(self, bot_url: str) -> SlackDriver:
        """A Slack driver aimed at the bot's `/slack/events`."""
        return SlackDriver(bot_url=bot_url + "/slack/events", signing_secret=SECRET, slack=self.slack)


@contextmanager
def sandboxes(extra_users: list[dict[str, Any]] | None = None, *, reset: bool = False) -> Iterator[Sandboxes]:
    """Start both sandboxes in-process and seed the demo estate.

    Args:
        extra_users: Slack users besides the sandbox's defaults.
        reset: forget every earlier AWS sandbox's state first (moto's backends are
            process-wide, and a big earlier run slows every IAM lookup of the next).
    """
    users = list(DEFAULT_USERS) + list(extra_users or [])
    with (
        AwsSandbox() as aws,
        SlackSandbox(users=users) as slack,
        tempfile.TemporaryDirectory(prefix="eice-bench-") as tmp,
    ):
        if reset:
            aws.reset()
        yield Sandboxes(aws, slack, seed_estate(aws), Path(tmp))


class BotProcess:
    """`eice serve --http` as a real subprocess; reports its peak RSS before it stops."""

    def __init__(self, world: Sandboxes, db_url: str, *, reaper_interval_s: float = 2.0) -> None:
        self.world = world
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = bot_env(
            world.aws,
            world.slack,
            db_url=db_url,
            config=world.config_path(),
            signing_secret=SECRET,
            EICE_REAPER_INTERVAL_S=str(reaper_interval_s),
            EICE_LOG_LEVEL="ERROR",
        )
        self.log_path = world.folder / f"bot-{self.port}.log"
        self.spawned_at = time.time()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "access.cli.main", "serve", "--http", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Block until `/healthz` answers 200 (RuntimeError if the process dies or it times out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"eice serve exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"eice serve did not become healthy in {timeout}s")

    def peak_rss_mb(self) -> float:
        """VmHWM of the live process, in MiB (0.0 where /proc is not available)."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0.0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_s(self) -> float:
        """User + system CPU seconds the live process has used so far (0.0 without /proc)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
