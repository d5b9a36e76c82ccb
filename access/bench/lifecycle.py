"""`bench lifecycle`: whole request -> approve -> grant -> revoke lifecycles per second, through Slack.

Each worker plays one requester: a signed `/eice request`, U0BOB clicks Approve on the
card the bot posted, the requester clicks "I'm done, revoke now" on the DM, and the
lifecycle counts once the grant is revoked and its policy is gone from the sandbox IAM.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from moto.iam.models import iam_backends
from sqlalchemy import select

from access.access_requests.models import AccessRequest
from access.bench.world import APPROVER, BotProcess, Sandboxes, percentile, sandboxes, scratch_database
from access.db import Database
from access.grants.models import Grant, GrantStatus
from access.grants.policy import policy_name
from sandbox.aws.account import bot_client

T = TypeVar("T")
APPROVALS = "C0APPROVALS"


def _until(check: Callable[[], T | None], timeout: float = 60.0, every: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("lifecycle step did not happen in time")
        time.sleep(every)


class Lifecycles:
    """Runs lifecycles for one bot; one requester per worker."""

    def __init__(
        self,
        world: Sandboxes,
        db: Database,
        bot_url: str,
        roles: dict[str, str],
        actions: tuple[str, str],
    ) -> None:
        self.world, self.db, self.bot_url = world, db, bot_url
        self.roles = roles
        self.approve, self.revoke = actions
        self.iam = iam_backends[world.aws.account_id]["aws"]

    def one(self, user: str, n: int) -> float:
        """A whole lifecycle for `user`; returns its duration in seconds."""
        started = time.monotonic()
        slack = self.world.slack
        driver = self.world.driver(self.bot_url)
        try:
            answer = driver.command(user, f"request {self.world.target} 30m lifecycle {n}")
            if answer.status != 200:
                raise RuntimeError(f"request not acked: {answer.status}")
            request_id = _until(lambda: self._pending(user))
            card = _until(
                lambda: next(
                    (
                        m
                        for m in slack.messages(APPROVALS)
                        if m.thread_ts is None and request_id in str(m.blocks)
                    ),
                    None,
                )
            )
            driver.click(APPROVER, card, self.approve)
            grant_id = _until(lambda: self._active_grant(request_id))
            dm = _until(
                lambda: next(
                    (
                        m
                        for m in slack.dms(user)
                        if grant_id in str(m.blocks) and self.revoke in str(m.blocks)
                    ),
                    None,
                )
            )
            driver.click(user, dm, self.revoke, value=grant_id)
            _until(lambda: self._revoked(grant_id, user))
        finally:
            driver.close()
        return time.monotonic() - started

    def _pending(self, user: str) -> str | None:
        with self.db.transaction() as session:
            return session.scalar(
                select(AccessRequest.id).where(
                    AccessRequest.requester_id == user, AccessRequest.status == "pending"
                )
            )

    def _active_grant(self, request_id: str) -> str | None:
        with self.db.transaction() as session:
            return session.scalar(
                select(Grant.id).where(Grant.request_id == request_id, Grant.status == GrantStatus.ACTIVE)
            )

    def _revoked(self, grant_id: str, user: str) -> bool:
        with self.db.transaction() as session:
            status = session.scalar(select(Grant.status).where(Grant.id == grant_id))
        if status != GrantStatus.REVOKED:
            return False
        return policy_name(grant_id) not in self.iam.get_role(self.roles[user]).policies


def bench_lifecycle(lifecycles: int, workers: int, *, actions: tuple[str, str]) -> dict[str, Any]:
    """Run `lifecycles` lifecycles, `workers` at a time; returns `{"benchmark": "lifecycle", ...}`.

    Args:
        lifecycles: lifecycles to complete in total.
        workers: requesters working at once (each runs its lifecycles one after another).
        actions: the action_ids of the card's Approve and the DM's revoke button (the
            Slack layer owns them; the CLI passes them in).
    """
    users = [f"U0LIFE{i:02d}" for i in range(workers)]
    extra = [{"id": u, "name": u.lower(), "email": f"{u.lower()}@example.com"} for u in users]
    with sandboxes(extra) as world, scratch_database("sqlite", world.folder) as url:
        iam = bot_client("iam", world.aws.url)
        run = uuid.uuid4().hex[:6]
        roles = {u: f"life-{run}-{u.lower()}" for u in users}
        for user, role in roles.items():
            arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
            world.extra_principals[user] = arn
        db = Database(url)
        bot = BotProcess(world, url)
        try:
            bot.wait_healthy()
            runner = Lifecycles(world, db, bot.url, roles, actions)
            runner.one(users[0], -1)  # warm-up, not counted

            def worker(index: int) -> list[float]:
                user = users[index]
                mine = range(index, lifecycles, workers)
                return [runner.one(user, n) for n in mine]

            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=workers) as pool:
                durations = [d for per in pool.map(worker, range(workers)) for d in per]
            elapsed = time.monotonic() - started
        finally:
            bot.stop()
            db.dispose()
    figures = {
        "lifecycles": len(durations),
        "workers": workers,
        "elapsed_s": round(elapsed, 3),
        "lifecycles_per_s": round(len(durations) / elapsed, 3),
        "lifecycle_p50_s": round(percentile(durations, 0.5), 3),
        "lifecycle_p99_s": round(percentile(durations, 0.99), 3),
    }
    return {"benchmark": "lifecycle", "figures": figures, "ratios": {}}
