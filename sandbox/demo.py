"""`eice demo`: the whole story against the sandbox, driven as real users would drive it.

The bot runs as a real `eice serve --http` process; people act through the Slack
stand-in's driver (signed slash commands and button clicks) and the real `eice ssh`
client. Every step is checked; the transcript shows the messages the bot really posted.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from sandbox.aws.account import bot_client
from sandbox.slack.driver import SlackDriver
from sandbox.slack.render import html, transcript
from sandbox.stack import APPROVALS_CHANNEL, SandboxStack

GRANT_SECONDS = 20


@dataclass
class Step:
    name: str
    ok: bool
    at: str
    detail: str


@dataclass
class DemoRun:
    started: float = field(default_factory=time.monotonic)
    steps: list[Step] = field(default_factory=list)
    progress: Callable[[Step], None] | None = None

    def step(self, name: str, ok: bool, detail: str) -> bool:
        step = Step(name, bool(ok), datetime.now(UTC).isoformat(timespec="milliseconds"), detail)
        self.steps.append(step)
        if self.progress:
            self.progress(step)
        return bool(ok)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout_s: float, every_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    return None


def eice(args: list[str], env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "access.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def run_demo(
    *, workdir: Path | None = None, progress: Callable[[Step], None] | None = None
) -> dict[str, Any]:
    """Run the story; returns the `--json` object (`ok`, `steps`, `grant`, events, ...)."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="eice-demo-"))
    run = DemoRun(progress=progress)
    stack = SandboxStack(workdir=workdir).start()
    db_url = f"sqlite:///{workdir / 'eice.sqlite'}"
    env = {
        **os.environ,
        **stack.bot_env(db_url),
        "EICE_COLLECTOR_INTERVAL_S": "2",
        "EICE_REAPER_INTERVAL_S": "1",
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    port = free_port()
    bot: subprocess.Popen[str] | None = None
    result: dict[str, Any] = {
        "ok": False,
        "steps": [],
        "grant": None,
        "cloudtrail_events": [],
        "audit_verified": False,
    }
    log = (workdir / "bot.log").open("w")
    try:
        migrated = eice(["migrate"], env)
        run.step("migrate", migrated.returncode == 0, _last_line(migrated.stdout or migrated.stderr))
        bot = subprocess.Popen(
            [sys.executable, "-m", "access.cli.main", "serve", "--http", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        healthy = wait_for(lambda: _healthy(base), 30)
        run.step("bot started", bool(healthy), f"eice serve --http on {base}")
        driver = SlackDriver(
            bot_url=f"{base}/slack/events", signing_secret=stack.signing_secret, slack=stack.slack
        )
        _story(run, stack, driver, env)
        result.update(_collect(stack, env, db_url))
    except Exception as exc:  # the transcript must still say what broke
        run.step("demo", False, f"{type(exc).__name__}: {exc}")
    finally:
        if bot is not None:
            bot.terminate()
            try:
                bot.wait(timeout=15)
            except subprocess.TimeoutExpired:
                bot.kill()
        log.close()
        result["transcript"] = transcript(stack.slack)
        result["html"] = html(stack.slack)
        stack.stop()
    result["steps"] = [s.__dict__ for s in run.steps]
    result["ok"] = all(s.ok for s in run.steps) and bool(run.steps)
    result["workdir"] = str(workdir)
    return result


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _iam(stack: SandboxStack) -> Any:
    return bot_client("iam", stack.aws.url)


def _grant_policies(stack: SandboxStack) -> list[str]:
    from access.grants.policy import is_own_policy_name

    names = _iam(stack).list_role_policies(RoleName="alice")["PolicyNames"]
    return [n for n in names if is_own_policy_name(n)]


def _story(run: DemoRun, stack: SandboxStack, driver: SlackDriver, env: dict[str, str]) -> None:
    slack = stack.slack
    web = stack.estate.instance("web-1")
    asked = driver.command("U0ALICE", f"request web-1 {GRANT_SECONDS}s fixing the disk alarm")
    run.step(
        "alice: /eice request",
        asked.status == 200,
        f"ack {asked.status} in {asked.elapsed_ms:.0f} ms",
    )
    card = wait_for(lambda: next(iter(slack.messages(APPROVALS_CHANNEL)), None), 20)
    if not run.step("approval card posted", card is not None, card.text if card else "no card in #approvals"):
        return
    for approver in ("U0BOB", "U0CAROL"):
        current = slack.message(card.channel, card.ts)
        if current is None:
            run.step(f"{approver}: Approve", False, "the card disappeared")
            return
        clicked = driver.click(approver, current, "eice_approve")
        run.step(f"{approver}: Approve", clicked.status == 200, f"HTTP {clicked.status}")
        time.sleep(0.3)
    policies = wait_for(lambda: _grant_policies(stack), 20)
    run.step(
        "policy on alice's role",
        bool(policies),
        ", ".join(policies or []) or "no eice-grant policy",
    )
    dm = wait_for(
        lambda: next((m for m in slack.dms("U0ALICE") if "eice ssh" in json.dumps(m.blocks) + m.text), None),
        20,
    )
    commands = _dm_commands(dm) if dm else []
    wanted = ("eice ssh ", "aws ec2-instance-connect ssh ", "aws ec2-instance-connect open-tunnel ")
    run.step(
        "DM with the commands",
        all(any(c.startswith(w) for c in commands) for w in wanted),
        "\n".join(commands) if commands else "no DM with commands",
    )
    updated = slack.message(card.channel, card.ts)
    run.step("card updated in place", bool(updated and updated.history), "chat.update on the same ts")
    alice = stack.user_env("alice")
    expires = _expiry_from(dm)
    ssh = eice(
        [
            "ssh",
            web.instance_id,
            "--os-user",
            "ec2-user",
            *(["--expires", expires] if expires else []),
            "--",
            "hostname",
        ],
        {**os.environ, **alice},
    )
    run.step(
        "alice: eice ssh -- hostname",
        ssh.returncode == 0 and "web-1" in ssh.stdout,
        _last_line(ssh.stdout or ssh.stderr),
    )
    other = eice(
        ["tunnel", web.instance_id, "--remote-port", "2222", "--max-tunnel-duration", "60"],
        {**os.environ, **alice},
        timeout_s=30,
    )
    run.step(
        "tunnel to another port refused",
        other.returncode != 0 and "AccessDenied" in other.stderr,
        _last_line(other.stderr),
    )
    revoked = wait_for(lambda: not _grant_policies(stack), GRANT_SECONDS + 20, every_s=0.2)
    run.step(
        "expiry: policy revoked",
        bool(revoked),
        "eice-grant policy removed from alice's role" if revoked else "policy still present",
    )
    again = eice(
        [
            "ssh",
            web.instance_id,
            "--os-user",
            "ec2-user",
            "--max-tunnel-duration",
            "60",
            "--",
            "hostname",
        ],
        {**os.environ, **alice},
    )
    run.step(
        "after expiry: eice ssh refused",
        again.returncode != 0 and "AccessDenied" in again.stderr,
        _last_line(again.stderr),
    )
    db_url = env["EICE_DATABASE_URL"]
    grant_id = _latest_grant_id(db_url)
    # Both refusals: the other port (during the grant) and eice ssh after expiry.
    collected = wait_for(lambda: _events_for(db_url, grant_id, refusals=2), 30, every_s=0.5)
    flags = sorted({e["flag"] for e in collected or [] if e["flag"]})
    run.step(
        "CloudTrail collected",
        bool(collected) and "outside_grant" in flags,
        f"{len(collected or [])} events attached to {grant_id}, 2 of them refused; "
        f"flagged: {', '.join(flags) or 'none'}",
    )
    audit = driver.command("U0ALICE", f"audit {grant_id}")

    def audit_answer() -> dict[str, Any] | None:
        return next(
            (e for e in slack.ephemerals("U0ALICE") if grant_id and grant_id in e.get("text", "")
             and "Searching" not in e.get("text", "")),
            None,
        )  # fmt: skip

    answer = wait_for(audit_answer, 20)
    run.step(
        "/eice audit <grant>",
        audit.status == 200 and answer is not None,
        (answer or {}).get("text", "no answer")[:300],
    )


def _latest_grant_id(db_url: str) -> str | None:
    from sqlalchemy import select

    from access.db import Database
    from access.grants.models import Grant

    db = Database(db_url)
    try:
        with db.transaction() as session:
            return session.scalars(select(Grant.id).order_by(Grant.created_at.desc())).first()
    finally:
        db.dispose()


def _events_for(db_url: str, grant_id: str | None, *, refusals: int = 0) -> list[dict[str, Any]]:
    """The CloudTrail events attached to the grant; none until `refusals` refused ones are."""
    from sqlalchemy import select

    from access.audit.cloudtrail_models import CloudTrailEvent
    from access.db import Database

    db = Database(db_url)
    try:
        with db.transaction() as session:
            rows = session.scalars(
                select(CloudTrailEvent)
                .where(CloudTrailEvent.grant_id == grant_id)
                .order_by(CloudTrailEvent.event_time)
            ).all()
            events = [
                {
                    "event_name": r.event_name,
                    "event_id": r.event_id,
                    "grant_id": r.grant_id,
                    "error_code": r.error_code,
                    "flag": r.flag,
                }
                for r in rows
            ]
    finally:
        db.dispose()
    if sum(1 for e in events if e["error_code"]) < refusals:
        return []
    return events


def _last_line(output: str) -> str:
    """What a command said last (its one-line error, or its result), whole."""
    lines = output.strip().splitlines()
    return lines[-1][:500] if lines else ""


def _dm_commands(dm: Any) -> list[str]:
    """The commands in the DM's code block, as the requester sees them."""
    text = "\n".join(str(b.get("text", {}).get("text", "")) for b in dm.blocks if b.get("type") == "section")
    block = re.search(r"```(.*?)```", text, re.S)
    return [line.strip() for line in block.group(1).splitlines() if line.strip()] if block else []


def _expiry_from(dm: Any) -> str | None:
    if dm is None:
        return None
    match = re.search(r"--expires (\S+?Z)", json.dumps(dm.blocks) + dm.text)
    return match.group(1) if match else None


def _collect(stack: SandboxStack, env: dict[str, str], db_url: str) -> dict[str, Any]:
    """Grant row, collected CloudTrail events and the audit chain, read back from the bot's DB."""
    from sqlalchemy import select

    from access.db import Database
    from access.grants.models import Grant

    db = Database(db_url)
    out: dict[str, Any] = {}
    with db.transaction() as session:
        grant = session.scalars(select(Grant).order_by(Grant.created_at.desc())).first()
        if grant is not None:
            out["grant"] = {
                "id": grant.id, "policy_name": grant.policy_name, "policy_document": grant.policy_document,
                "principal_arn": grant.principal_arn, "granted_at": _iso(grant.applied_at),
                "expires_at": _iso(grant.expires_at), "revoked_at": _iso(grant.revoked_at),
            }  # fmt: skip
    out["cloudtrail_events"] = _events_for(db_url, out["grant"]["id"]) if out.get("grant") else []
    verify = eice(["audit", "verify"], env)
    out["audit_verified"] = verify.returncode == 0
    db.dispose()
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
