"""`eice serve` runs `/eice` commands after the ack in low-priority worker processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from access.settings import Settings
from bot.workers import CommandWorkers, lower_priority
from sandbox.aws.seed import Estate
from sandbox.aws.server import AwsSandbox
from sandbox.slack.server import SlackSandbox
from tests.bot.harness import World, eventually, start_bot


def _workers(server_pid: int) -> set[int]:
    """The server's multiprocessing workers (not its resource tracker)."""
    found: set[int] = set()
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                found.add(int(child))
    return found


def _nice(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of stat; fields[0] is field 3


def _server_pid(world: World) -> int:
    assert world.process is not None
    return world.process.pid


def test_command_workers_run_below_the_servers_priority(world: World) -> None:
    server_nice = _nice(_server_pid(world))
    assert os.sched_getscheduler(_server_pid(world)) == os.SCHED_OTHER

    def lowered() -> bool:  # a worker lowers its priority first thing once it is running
        workers = _workers(_server_pid(world))
        return bool(workers) and all(
            _nice(pid) > server_nice and os.sched_getscheduler(pid) == os.SCHED_IDLE for pid in workers
        )

    assert eventually(lowered, timeout=60)


def test_a_killed_worker_is_replaced_and_the_command_still_runs(world: World) -> None:
    web = world.estate.instance("web-1")
    killed = eventually(lambda: _workers(_server_pid(world)), timeout=60)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)

    ack = world.driver.command("U0ALICE", "request web-1 30m after a worker crash")
    assert ack.status == 200

    request = eventually(
        lambda: world.request_row(requester_id="U0ALICE", instance_id=web.instance_id, status="pending"),
        timeout=60,
    )
    eventually(lambda: world.card_for(request.id), timeout=30)
    replacements = eventually(lambda: _workers(_server_pid(world)) - killed, timeout=60)
    assert replacements and not (replacements & killed)
    assert world.process is not None and world.process.poll() is None  # the server carried on


def test_a_command_whose_worker_dies_under_it_is_run_by_another(world: World) -> None:
    web = world.estate.instance("web-1")
    before = eventually(lambda: _workers(_server_pid(world)), timeout=60)
    ack = world.driver.command("U0ALICE", "request web-1 30m the worker dies mid-command")
    assert ack.status == 200
    for pid in before:  # at once: the command is queued or half done (AWS lookups take longer)
        os.kill(pid, signal.SIGKILL)

    request = eventually(
        lambda: world.request_row(requester_id="U0ALICE", instance_id=web.instance_id, status="pending"),
        timeout=60,
    )
    eventually(lambda: world.card_for(request.id), timeout=30)
    assert eventually(lambda: len(_workers(_server_pid(world)) - before) == 2, timeout=60)
    assert world.process is not None and world.process.poll() is None


def test_workers_finish_the_acked_commands_of_a_killed_server_then_end(
    aws: AwsSandbox, slack: SlackSandbox, estate: Estate, config_path: Path, tmp_path: Path
) -> None:
    own = start_bot(aws, slack, estate, f"sqlite:///{tmp_path}/killed.sqlite", config_path, tmp_path)
    try:
        workers = eventually(lambda: _workers(_server_pid(own)), timeout=60)
        asked = [
            (user, estate.instance(name))
            for user in ("U0ALICE", "U0BOB", "U0CAROL")
            for name in ("web-1", "db-1")
        ]
        for user, instance in asked:  # acked at once; the workers take a while over each
            assert (
                own.driver.command(user, f"request {instance.name} 30m acked then the server dies").status
                == 200
            )
        assert own.process is not None
        own.process.kill()  # no chance to stop its workers itself
        own.process.wait()

        def all_written() -> bool:
            return all(
                own.request_row(requester_id=user, instance_id=instance.instance_id, status="pending")
                for user, instance in asked
            )

        assert eventually(all_written, timeout=60)  # every acked command ran: nothing lost
        eventually(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout=30)
    finally:
        own.stop()


def test_workers_that_cannot_start_are_restarted_ever_more_slowly_and_their_command_is_answered(
    tmp_path: Path,
) -> None:
    # Every worker dies while starting: its settings name an eice.toml that is not there.
    settings = Settings(
        eice_database_url=f"sqlite:///{tmp_path}/workers.sqlite", eice_config=str(tmp_path / "missing.toml")
    )
    lost: list[dict[str, str]] = []
    workers = CommandWorkers(settings, processes=1, on_lost=lost.append)
    workers.start()
    try:
        command = {"command": "/eice", "text": "help", "user_id": "U0ALICE"}
        workers.submit(command)
        assert eventually(lambda: lost, timeout=60) == [command]  # after two workers died with it
        restarts = workers.restarts
        time.sleep(10)
        # A restart per supervisor pass (0.5 s) plus a start-up (~1 s) would be 6 or more;
        # the delays double from 1 s while workers keep dying young.
        assert 1 <= workers.restarts - restarts <= 3
    finally:
        workers.stop()


def _in_a_thread(nice: int, idle: bool) -> tuple[int, int]:
    """(policy, nice) of a fresh thread after `lower_priority` (the test process stays as it is)."""
    seen: list[tuple[int, int]] = []

    def body() -> None:
        lower_priority(nice, idle)
        seen.append((os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return seen[0]


def test_lower_priority_takes_the_idle_policy_or_only_a_nice_value() -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert _in_a_thread(4, idle=True) == (os.SCHED_IDLE, base + 4)
    assert _in_a_thread(4, idle=False) == (os.SCHED_OTHER, base + 4)
    assert (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)) == (os.SCHED_OTHER, base)
