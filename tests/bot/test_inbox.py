"""Acked requests survive a crash: the inbox keeps them until their work is over, and the
next server of the installation runs what a dead server left (`bot.inbox`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from access.errors import ConfigError
from access.grants.models import Grant
from bot.actions import Action
from bot.inbox import Inbox, default_root, hold
from sandbox.aws.seed import Estate
from sandbox.aws.server import AwsSandbox
from sandbox.slack.server import SlackSandbox
from tests.bot.harness import World, eventually, start_bot
from tests.bot.test_workers import _workers

ROOT = Path(__file__).resolve().parents[2]
COMMAND = {"command": "/eice", "text": "request web-1 30m", "user_id": "U0ALICE", "trigger_id": "1.2.aa"}


def _server(root: Path, *bodies: dict[str, Any], settle: int = 0) -> subprocess.Popen[str]:
    """A process that opens an inbox under `root`, keeps `bodies`, settles the first
    `settle` of them, prints its folder and waits (to be killed)."""
    code = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from bot.inbox import Inbox
        inbox = Inbox(Path({str(root)!r}))
        bodies = json.loads({json.dumps(json.dumps(bodies))})
        for body in bodies:
            inbox.keep(body)
        for body in bodies[:{settle}]:
            inbox.settle(body)
        print(inbox.folder, flush=True)
        time.sleep(600)
        """
    )
    return _child(code)


def _child(code: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)


def _kill(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait()


def test_requests_left_by_a_killed_server_are_replayed_once_its_workers_are_gone(tmp_path: Path) -> None:
    click = {"type": "block_actions", "trigger_id": "3.4.bb", "actions": [{"value": "r-1"}]}
    done = {"command": "/eice", "text": "help", "trigger_id": "5.6.cc"}
    server = _server(tmp_path, done, COMMAND, click, settle=1)
    assert server.stdout is not None
    folder = Path(server.stdout.readline().strip())
    worker = _child(f"from pathlib import Path; from bot.inbox import hold; import time\n"
                    f"hold(Path({str(folder)!r})); print('held', flush=True); time.sleep(600)")  # fmt: skip
    assert worker.stdout is not None and worker.stdout.readline().strip() == "held"
    (folder / "7.8.dd.partial").write_text("{")  # a file cut short before its ack: never acked
    adopter = Inbox(tmp_path)
    replayed: list[dict[str, Any]] = []
    kept: list[datetime] = []

    def replay(body: dict[str, Any], kept_at: datetime) -> None:
        replayed.append(body)
        kept.append(kept_at)

    try:
        assert adopter.adopt(replay) == 0  # the server is alive
        _kill(server)
        assert adopter.adopt(replay) == 0  # its worker may still finish the requests
        assert folder.exists()
        _kill(worker)
        assert adopter.adopt(replay) == 2
        assert replayed == [COMMAND, click]  # oldest first; the settled one is not there
        assert all(datetime.now(UTC) - at < timedelta(minutes=1) for at in kept)  # when they were kept
        assert not folder.exists()
        assert adopter.adopt(replay) == 0  # once only
    finally:
        for process in (server, worker):
            if process.poll() is None:
                _kill(process)
        adopter.close()
    assert list(tmp_path.iterdir()) == []  # an empty inbox leaves nothing behind


def test_an_unreadable_request_file_is_dropped_and_the_others_still_run(tmp_path: Path) -> None:
    server = _server(tmp_path, COMMAND)
    assert server.stdout is not None
    folder = Path(server.stdout.readline().strip())
    _kill(server)
    (folder / "9.9.ee.json").write_text("not json")
    adopter = Inbox(tmp_path)
    replayed: list[dict[str, Any]] = []
    assert adopter.adopt(lambda body, _at: replayed.append(body)) == 1
    assert replayed == [COMMAND]
    adopter.close()


def test_a_replay_that_fails_does_not_keep_the_others_from_running(tmp_path: Path) -> None:
    other = {**COMMAND, "trigger_id": "1.2.zz"}
    server = _server(tmp_path, COMMAND, other)
    assert server.stdout is not None
    server.stdout.readline()
    _kill(server)
    adopter = Inbox(tmp_path)
    replayed: list[dict[str, Any]] = []

    def replay(body: dict[str, Any], _kept_at: datetime) -> None:
        if body == COMMAND:
            raise RuntimeError("this one breaks")
        replayed.append(body)

    assert adopter.adopt(replay) == 2
    assert replayed == [other]
    assert adopter.adopt(replay) == 0
    adopter.close()


def test_an_inbox_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"cannot keep acked requests in .*EICE_INBOX_DIR"):
        Inbox(blocker / "inbox")


def test_a_folder_held_by_a_live_process_is_left_alone(tmp_path: Path) -> None:
    mine = Inbox(tmp_path / "a")
    fd = hold(mine.folder)  # as a worker of `mine` would
    try:
        assert Inbox(tmp_path / "a").adopt(lambda body, at: None) == 0
        assert mine.folder.exists()
    finally:
        os.close(fd)
        mine.close()


def _kill_group(world: World) -> None:
    """SIGKILL the server and every process of its session (its command workers)."""
    assert world.process is not None
    os.killpg(world.process.pid, signal.SIGKILL)
    world.process.wait()


def _inbox_folders(tmp: Path) -> list[Path]:
    return list((tmp / "inbox").glob("*/server-*"))


def _acked_then_all_killed(
    aws: AwsSandbox, slack: SlackSandbox, estate: Estate, db_url: str, config: Path, tmp: Path, text: str
) -> World:
    """A bot whose workers are frozen acks alice's `/eice <text>`; then it is killed with them
    (returned stopped, for its database)."""
    first = start_bot(aws, slack, estate, db_url, config, tmp)
    try:
        workers = eventually(lambda: _workers(first.process.pid if first.process else 0), timeout=60)
        for pid in workers:  # they take the command from the pipe, but cannot run it
            os.kill(pid, signal.SIGSTOP)
        assert first.driver.command("U0ALICE", text).status == 200
        _kill_group(first)
    finally:
        first.stop()
    return first


def test_a_command_acked_just_before_the_server_and_its_workers_were_killed_runs_after_restart(
    aws: AwsSandbox, slack: SlackSandbox, estate: Estate, config_path: Path, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path}/group.sqlite"
    web = estate.instance("web-1")
    text = "request web-1 30m acked, then the whole service was killed"
    first = _acked_then_all_killed(aws, slack, estate, db_url, config_path, tmp_path, text)
    assert first.request_row(requester_id="U0ALICE", instance_id=web.instance_id) is None  # never ran
    assert len(_inbox_folders(tmp_path)) == 1

    second = start_bot(aws, slack, estate, db_url, config_path, tmp_path)
    try:
        request = eventually(
            lambda: second.request_row(requester_id="U0ALICE", instance_id=web.instance_id, status="pending"),
            timeout=60,
        )
        assert request.reason == "acked, then the whole service was killed"
        eventually(lambda: second.card_for(request.id), timeout=30)
        eventually(lambda: len(_inbox_folders(tmp_path)) == 1, timeout=30)  # only the live server's

        def metrics() -> str:
            return requests.get(second.url + "/metrics", timeout=5).text

        assert "eice_requests_replayed_total 1.0" in metrics()
        eventually(lambda: "eice_requests_unfinished 0.0" in metrics(), timeout=30)
        second.cleanup()
    finally:
        second.stop()
    assert _inbox_folders(tmp_path) == []  # a clean stop with nothing pending leaves no folder


def test_an_approval_acked_just_before_the_server_died_is_carried_out_after_restart(
    aws: AwsSandbox, slack: SlackSandbox, estate: Estate, config_path: Path, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path}/click.sqlite"
    db = estate.instance("db-1")
    # The click's work dies a second after its ack (the server with it).
    first = start_bot(aws, slack, estate, db_url, config_path, tmp_path, EICE_FAILPOINTS="after_click_ack@1")
    try:
        assert first.driver.command("U0ALICE", "request db-1 15m approval survives").status == 200
        request = eventually(
            lambda: first.request_row(requester_id="U0ALICE", instance_id=db.instance_id, status="pending"),
            timeout=60,
        )
        card = eventually(lambda: first.card_for(request.id), timeout=30)
        assert first.driver.click("U0BOB", card, Action.APPROVE).status == 200
        assert first.process is not None
        assert first.process.wait(timeout=30) == 77
    finally:
        first.stop()
    assert first.request_row(id=request.id).status == "pending"  # the click's work never ran

    second = start_bot(aws, slack, estate, db_url, config_path, tmp_path)
    try:
        approved = eventually(
            lambda: second.request_row(id=request.id, status="approved"), timeout=60
        )  # once the dead server's workers have ended too
        assert approved.decided_by == "U0BOB"
        with second.rt.db.transaction() as s:
            grants = list(s.scalars(select(Grant).where(Grant.request_id == request.id)))
        assert len(grants) == 1
        eventually(lambda: grants[0].policy_name in second.policies("alice"), timeout=30)
        second.cleanup()
    finally:
        second.stop()


def test_the_default_folder_follows_systemd_then_xdg_then_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/eice")
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert default_root() == Path("/home/eice/.local/state/eice/inbox")
    monkeypatch.setenv("XDG_STATE_HOME", "/var/state")
    assert default_root() == Path("/var/state/eice/inbox")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/eice:/var/lib/other")  # systemd's StateDirectory=
    assert default_root() == Path("/var/lib/eice/inbox")


def test_a_request_left_too_long_ago_is_not_run_and_its_user_is_told(
    aws: AwsSandbox, slack: SlackSandbox, estate: Estate, config_path: Path, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path}/old.sqlite"
    web = estate.instance("web-1")
    text = "request web-1 30m acked two hours ago"
    _acked_then_all_killed(aws, slack, estate, db_url, config_path, tmp_path, text)
    [folder] = _inbox_folders(tmp_path)
    [kept] = folder.glob("*.json")
    request = json.loads(kept.read_text())
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    request["kept_ns"] = int(two_hours_ago.timestamp() * 1e9)  # as if the host had been down since
    kept.write_text(json.dumps(request))
    seen = len(slack.dms("U0ALICE"))

    second = start_bot(aws, slack, estate, db_url, config_path, tmp_path)
    try:
        told = eventually(
            lambda: [m.text for m in slack.dms("U0ALICE")[seen:] if "was not carried out" in m.text],
            timeout=60,
        )
        assert "`/eice request web-1 30m acked two hours ago`" in told[0] and "Please try again" in told[0]
        eventually(lambda: len(_inbox_folders(tmp_path)) == 1, timeout=30)  # taken over: only the live one
        assert second.request_row(requester_id="U0ALICE", instance_id=web.instance_id) is None
    finally:
        second.stop()


def test_an_inbox_that_cannot_be_written_is_logged_and_the_request_still_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox(tmp_path)
    assert inbox.keep(COMMAND) and inbox.pending() == 1
    inbox.settle(COMMAND)
    shutil.rmtree(inbox.folder)  # someone cleaned the state folder under a running server
    assert inbox.keep(COMMAND) is False
    assert "a crash would lose it" in caplog.text
    assert inbox.keep({"text": "no trigger id"}) is False
    inbox.close()
