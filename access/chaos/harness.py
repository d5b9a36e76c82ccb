"""The chaos world: AWS and Slack sandboxes in this process, a real database, the bot as real
`eice serve` processes, lifecycles driven through the workflows or through Slack clicks, a live
observer of the grants table, and the final snapshot the invariants are checked on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from access.access_requests.models import AccessRequest, RequestStatus
from access.access_requests.prepare import RequestInput
from access.aws.calls import AwsClients
from access.aws.iam import IamPolicies
from access.chaos.collect import Observer, snapshot
from access.chaos.invariants import Snapshot
from access.chaos.procs import SIGNING_SECRET, BotProcess, spawn_bot, wait_healthy
from access.config.loader import parse_config
from access.config.permissions import Actor
from access.db import Database
from access.errors import AccessError
from access.grants.models import Grant
from access.migrate import scratch_postgres, upgrade
from access.runtime import Runtime
from access.workflows import approve_request, submit_request
from sandbox.aws.account import bot_client, bot_session
from sandbox.aws.seed import seed_estate
from sandbox.aws.server import AwsSandbox
from sandbox.bot_env import bot_env
from sandbox.slack.driver import SlackDriver
from sandbox.slack.server import DEFAULT_USERS, SlackSandbox

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
APPROVALS = "C0APPROVALS"
APPROVE_ACTION = "eice_approve"  # bot.actions.Action.APPROVE; access/ does not import bot/
REAPER_INTERVAL_S = 0.5
# Short, so a killed process's claims lapse soon; longer than one IAM call with its retries
# when IAM is healthy (the throttle scenario uses a longer one, as the product's 60 s is).
CLAIM_LEASE_S = 8.0
PROGRESS_EVERY_S = 30.0


def now() -> datetime:
    return datetime.now(UTC)


def chaos_config(account_id: str, users: list[str]) -> str:
    """One approval from U0BOB for prod, auto-approval for dev; one role per chaos user."""
    principals = "\n".join(f'{u} = "arn:aws:iam::{account_id}:role/eice/chaos-{u.lower()}"' for u in users)
    return f"""
[aws]
regions = ["us-east-1"]

[defaults]
approvers = ["U0BOB"]
approvals_required = 1
admins = ["U0ADMIN"]
approvals_channel = "{APPROVALS}"
audit_channel = "C0AUDIT"
max_duration = "4h"
approval_timeout = "30m"

[[rules]]
name = "dev"
match = {{ tags = {{ env = "dev" }} }}
auto_approve = true

[principals]
{principals}
"""


@contextlib.contextmanager
def chaos_database(kind: str, folder: Path, postgres_url: str | None = None) -> Iterator[str]:
    """A migrated throwaway database: a SQLite file, or a new database on a PostgreSQL server."""
    if kind == "sqlite":
        for stale in folder.glob("chaos.sqlite*"):
            stale.unlink()  # a reused --workdir starts from an empty database
        url = f"sqlite:///{folder / 'chaos.sqlite'}"
        upgrade(url)
        yield url
        return
    server = postgres_url or os.environ.get("EICE_CHAOS_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    with scratch_postgres(server, "eice_chaos") as url:
        yield url


class ChaosWorld:
    """Start with `start(db_url)`; `stop()` ends every bot process and both sandboxes."""

    def __init__(
        self,
        workdir: Path,
        *,
        users: int = 24,
        overdue_after_s: float = 60.0,
        claim_lease_s: float = CLAIM_LEASE_S,
    ) -> None:
        self.claim_lease_s = claim_lease_s
        self.workdir = workdir
        self.users = [f"U0C{i:03d}" for i in range(users)]
        self.overdue_after_s = overdue_after_s
        self.aws = AwsSandbox()
        self.slack = SlackSandbox(
            users=[
                *DEFAULT_USERS,
                *({"id": u, "name": u.lower(), "email": f"{u.lower()}@example.com"} for u in self.users),
            ]
        )
        self.bots: list[BotProcess] = []
        self.impairments: list[tuple[datetime, datetime]] = []
        self.crashes: list[datetime] = []
        self.restarts = 0
        self.extra_env: dict[str, str] = {}
        self.submitted = 0
        self.progress_every_s = PROGRESS_EVERY_S
        self._started_at = time.monotonic()
        self._last_progress = time.monotonic()
        self._down_since: datetime | None = None
        self._saved_env: dict[str, str] = {}
        self.observer = Observer("")
        self.watch_claims = False
        self.refused_submits = 0
        self.cluster: Any = None  # the private PostgreSQL cluster, when the scenario has one

    # set-up and tear-down

    def start(self, db_url: str) -> ChaosWorld:
        self.db_url = db_url
        self.aws.start()
        self.aws.reset()  # moto's state is process-wide: start from nothing
        self.slack.start()
        self._saved_env = dict(os.environ)
        os.environ.update(self.aws.env())
        os.environ.update(AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        self.estate = seed_estate(self.aws)
        iam = self.iam_client()
        self.role_arns = {}
        for user in self.users:
            name = f"chaos-{user.lower()}"
            with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
                iam.create_role(RoleName=name, Path="/eice/", AssumeRolePolicyDocument="{}")
            self.role_arns[user] = iam.get_role(RoleName=name)["Role"]["Arn"]
        self.config_path = self.workdir / "eice.toml"
        self.config_path.write_text(chaos_config(self.estate.account_id, self.users))
        config = parse_config(self.config_path.read_text(), source=str(self.config_path))
        session = bot_session()
        clients = AwsClients(session)
        self.rt = Runtime(
            db=Database(db_url),
            config=config,
            clients=clients,
            iam=IamPolicies(clients),
            worker_id="chaos-harness",
            claim_lease_s=self.claim_lease_s,
            reaper_interval_s=REAPER_INTERVAL_S,
            overdue_after_s=self.overdue_after_s,
        )
        return self

    def stop(self) -> None:
        self.stop_observer()
        for bot in self.bots:
            with contextlib.suppress(Exception):
                bot.kill()
        with contextlib.suppress(Exception):
            self.rt.db.dispose()
        self.slack.stop()
        self.aws.stop()
        os.environ.clear()
        os.environ.update(self._saved_env)

    def iam_client(self) -> Any:
        return bot_client("iam", self.aws.url)

    # bot processes

    def bot_env(self, name: str) -> dict[str, str]:
        env = bot_env(
            self.aws,
            self.slack,
            db_url=self.db_url,
            config=self.config_path,
            signing_secret=SIGNING_SECRET,
            base=self._saved_env,
            AWS_SDK_UA_APP_ID=name,
            EICE_REPLICA_ID=f"{name}:{uuid.uuid4().hex[:6]}",
            EICE_REAPER_INTERVAL_S=str(REAPER_INTERVAL_S),
            EICE_CLAIM_LEASE_S=str(self.claim_lease_s),
            EICE_RECONCILER_INTERVAL_S="15",
            EICE_COLLECTOR_INTERVAL_S="3600",
            EICE_OVERDUE_AFTER_S=str(self.overdue_after_s),
            EICE_LOG_LEVEL="WARNING",
        )
        env.update(self.extra_env)
        return env

    def spawn(self, name: str = "bot", *, failpoint: str | None = None, wait: bool = True) -> BotProcess:
        """Start one bot process; with `wait`, block until it is healthy (and end any downtime)."""
        bot = spawn_bot(name, self.bot_env(name), self.workdir, failpoint=failpoint)
        self.bots.append(bot)
        if wait and not wait_healthy(bot) and bot.failpoint_hit() is None:
            raise RuntimeError(f"{name} did not become healthy: {bot.log_path.read_text()[-2000:]}")
        if wait:
            self.mark_up()
        return bot

    def crashed(self, bot: BotProcess, *, kill: bool = True, impairs: bool = True) -> None:
        """Note a crash (killing the process first if asked): the downtime starts now."""
        if kill:
            bot.kill()
        self.crashes.append(now())
        if impairs:
            self.mark_down()

    def mark_down(self, at: datetime | None = None) -> None:
        if self._down_since is None:
            self._down_since = at or now()

    def mark_up(self, at: datetime | None = None) -> None:
        if self._down_since is not None:
            self.impairments.append((self._down_since, at or now()))
            self._down_since = None

    def impaired(self, start: datetime, end: datetime) -> None:
        """A fault window (IAM throttling, a paused database...) counted like downtime."""
        self.impairments.append((start, end))

    def driver(self, bot: BotProcess) -> SlackDriver:
        return SlackDriver(
            bot_url=bot.url + "/slack/events", signing_secret=SIGNING_SECRET, slack=self.slack, timeout_s=10
        )

    # lifecycles

    def busy_users(self) -> set[str]:
        with self.rt.db.transaction() as s:
            live = set(
                s.scalars(
                    select(Grant.requester_id).where(Grant.status.in_(("applying", "active", "revoking")))
                )
            )
            pending = set(
                s.scalars(
                    select(AccessRequest.requester_id).where(AccessRequest.status == RequestStatus.PENDING)
                )
            )
        return live | pending

    def submit(self, user: str, instance: str, duration: str) -> str | None:
        """Ask in the harness process (auto-approved requests are applied right here)."""
        try:
            outcome = submit_request(self.rt, RequestInput(Actor(user), instance, duration, reason="chaos"))
        except AccessError:
            return None
        except Exception:  # e.g. IAM throttled the principal lookup: no request was made
            self.refused_submits += 1
            return None
        self.submitted += 1
        return outcome.request.id

    def progress(self, phase: str = "running") -> None:
        """A line on stderr at most every `progress_every_s`: a long run shows it is alive."""
        if time.monotonic() - self._last_progress < self.progress_every_s:
            return
        self._last_progress = time.monotonic()
        ended: int | str | None = "?"
        # The database may be the fault being injected.
        with contextlib.suppress(Exception), self.rt.db.transaction() as s:
            ended = s.scalar(select(func.count()).select_from(Grant).where(Grant.status == "revoked"))
        elapsed = int(time.monotonic() - self._started_at)
        print(
            f"eice chaos: {phase}, {elapsed // 60}m{elapsed % 60:02d}s: {self.submitted} requests, "
            f"{ended} grants revoked, {self.restarts} restarts",
            file=sys.stderr,
            flush=True,
        )

    def approve_direct(self, request_id: str) -> str | None:
        outcome = approve_request(self.rt, request_id, Actor("U0BOB"))
        return outcome.grant_id

    def click_approve(self, bot: BotProcess, request_id: str) -> bool:
        """Click Approve on the request's card as U0BOB; False if there is no card or no bot."""
        card = next(
            (
                m
                for m in self.slack.messages(APPROVALS)
                if m.thread_ts is None and request_id in str(m.blocks)
            ),
            None,
        )
        if card is None:
            return False
        driver = self.driver(bot)
        try:
            return driver.click("U0BOB", card, APPROVE_ACTION, value=request_id).status == 200
        except Exception:
            return False
        finally:
            driver.close()

    def pending_requests(self) -> list[str]:
        with self.rt.db.transaction() as s:
            return list(
                s.scalars(
                    select(AccessRequest.id)
                    .where(AccessRequest.status == RequestStatus.PENDING)
                    .order_by(AccessRequest.created_at)
                )
            )

    def unsettled(self) -> int:
        """Grants not yet final whose expiry has passed, or still applying."""
        with self.rt.db.transaction() as s:
            rows = s.execute(
                select(Grant.status, Grant.expires_at).where(
                    Grant.status.in_(("applying", "active", "revoking"))
                )
            ).all()
        t = now()
        return sum(1 for status, expires in rows if status != "active" or expires <= t)

    def settle(self, timeout: float = 120.0) -> bool:
        """Wait (with a bot running) until every due grant is final; True if it happened."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.unsettled() == 0:
                return True
            time.sleep(0.3)
        return False

    def wait_all_final(self, timeout: float = 300.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.rt.db.transaction() as s:
                left = s.scalar(
                    select(text("count(*)"))
                    .select_from(Grant)
                    .where(Grant.status.in_(("applying", "active", "revoking")))
                )
            if not left and not self.pending_requests():
                return True
            self.progress("finishing")
            time.sleep(0.3)
        return False

    # watching and collecting (access.chaos.collect)

    def start_observer(self, every_s: float = 0.2) -> None:
        self.observer = Observer(self.db_url, watch_claims=self.watch_claims)
        self.observer.start(every_s)

    def stop_observer(self) -> None:
        self.observer.stop()

    def snapshot(self, *, ended_at: datetime | None = None, excused: set[str] | None = None) -> Snapshot:
        """What the invariants are checked on, as things are now."""
        return snapshot(self, ended_at=ended_at, excused=excused)
