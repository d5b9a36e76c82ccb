"""Command workers: the work after an `/eice` ack, in separate low-priority processes.

Why processes: what follows an ack (botocore parsing, SQLAlchemy, pre-flight, Block Kit)
is Python CPU work. Run on threads of the serving process it holds the GIL that the ack
threads need, and a burst of commands delays every ack behind it. In their own processes,
at a lower scheduling priority (`nice`), it cannot. Each worker builds its own runtime,
database engine, boto3 clients and Slack client from the same settings.

The hand-off is one pipe per worker, written by the ack thread itself: pickling a command
and writing it costs tens of microseconds and wakes no other thread of the serving process
(a `ProcessPoolExecutor` wakes two, a manager and a feeder, whose GIL time lands on the
ack's response). Each worker counts the commands it has finished in shared memory; a
supervisor thread reads those counters twice a second, so nothing comes back per command.

Delivery is at least once: the commands a dead worker had not finished are sent again to
another worker (the request flow refuses a second pending request for the same instance),
and a command that still cannot run is answered with an error, so an acked command is
never dropped without a word. A graceful stop drains the queues; so does a killed server's
worker, which runs what its pipe still holds and then ends. When the server and its
workers are killed together, the commands' files in the server's inbox (`bot.inbox`) are
run by the next server of the installation on the host. A worker that dies young is
replaced after a delay that doubles up to a minute, so one that cannot start does not spin;
commands that arrive while none is up wait for the first replacement.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import TYPE_CHECKING, Any

from access.errors import ConfigError
from access.settings import Settings
from bot.inbox import hold, settle_in

if TYPE_CHECKING:
    from bot.context import Bot

log = logging.getLogger(__name__)
WORKER_NICE = 10
ATTEMPTS = 2
SUPERVISE_EVERY_S = 0.5
PIPE_BYTES = 1 << 20  # about 700 queued commands per worker before an ack would wait
STOP_TIMEOUT_S = 120.0
EARLY_DEATH_S = 30.0  # a worker that dies younger than this counts towards a crash loop
MAX_RESPAWN_DELAY_S = 60.0

Body = dict[str, Any]
_worker_bot: Bot | None = None


def _exit_with_server(server_pid: int, every_s: float = 1.0, grace_s: float = STOP_TIMEOUT_S) -> None:
    """Bound a worker's life after its server is gone.

    The pipe from a killed server still holds the commands it acked; the worker runs them
    and stops at the pipe's end (so an acked command is not lost with the server). This
    thread only ends a worker that is still busy `grace_s` later.
    """
    while os.getppid() == server_pid:
        time.sleep(every_s)
    log.warning("the server is gone; finishing the commands it queued (at most %.0f s)", grace_s)
    time.sleep(grace_s)
    log.error("command worker %s still busy %.0f s after its server went; ending it", os.getpid(), grace_s)
    os._exit(1)


def lower_priority(nice: int, idle: bool) -> None:
    """Lower this thread's scheduling priority; the threads it starts later inherit it.

    `idle` asks Linux for SCHED_IDLE: the thread runs only on CPU time no normal task wants,
    and a waking normal task (an ack thread) takes the core from it at once. A mere `nice`
    lowers its share but lets it finish its time slice first, a few milliseconds that
    show in the acks' tail on a small machine. Where SCHED_IDLE is not offered, `nice` alone.
    """
    if nice:
        os.nice(nice)
    policy = getattr(os, "SCHED_IDLE", None)
    if idle and policy is not None:
        try:
            os.sched_setscheduler(0, policy, os.sched_param(0))
        except OSError as exc:
            log.warning("could not give the command worker the idle scheduling policy: %s", exc)


def _init_worker(settings: Settings, nice: int, server_pid: int, inbox: Path | None) -> None:
    """Process start-up: hold the server's inbox, lower priority, own runtime and Slack
    services."""
    global _worker_bot
    if inbox is not None:  # no other server takes over the inbox while this worker may finish its requests
        hold(inbox)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    lower_priority(nice, settings.eice_command_worker_priority == "idle")
    threading.Thread(
        target=_exit_with_server, args=(server_pid,), name="eice-server-watch", daemon=True
    ).start()
    logging.basicConfig(
        level=settings.eice_log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s",
    )
    from access.runtime import Runtime
    from bot.app import web_client
    from bot.context import Bot

    if settings.eice_replica_id:  # claims and leases must tell this process from the server
        settings = settings.model_copy(
            update={"eice_replica_id": f"{settings.eice_replica_id}:w{os.getpid()}"}
        )
    _worker_bot = Bot.create(Runtime.from_settings(settings), web_client(settings))


def _run_command(body: Body) -> None:
    from bot.listeners.commands import handle_eice

    if _worker_bot is None:
        raise RuntimeError("command worker was not initialised")
    # The worker delivers what its command queued (the approval card) itself, so that
    # Block Kit and Slack calls stay out of the serving process too.
    handle_eice(_worker_bot, body, kick=True)


def _worker_main(
    jobs: Connection,
    done: Synchronized[int],
    settings: Settings,
    nice: int,
    server_pid: int,
    inbox: Path | None,
) -> None:
    """A worker process: run the commands from `jobs` in order until `None` or end of pipe;
    each finished command's file leaves the server's `inbox`."""
    _init_worker(settings, nice, server_pid, inbox)
    log.info("command worker %s ready", os.getpid())
    while True:
        try:
            body = jobs.recv()
        except (EOFError, OSError):  # the server closed the pipe, or died, after what it sent
            return
        if body is None:
            return
        try:
            _run_command(body)
        except Exception as exc:  # handle_eice answers errors itself; this is a bug in the plumbing
            log.error("command job failed: %s", type(exc).__name__)
        if inbox is not None:
            settle_in(inbox, body)
        done.value += 1  # only this process writes it


def _grow_pipe(conn: Connection) -> None:
    """Make the pipe hold about a megabyte, so bursts queue without blocking an ack."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


@dataclass
class _Worker:
    """One worker process, the pipe to it, and what was sent to it and not yet finished."""

    process: BaseProcess
    jobs: Connection
    done: Synchronized[int]
    unfinished: deque[tuple[Body, int]] = field(default_factory=deque)  # (body, attempt), in order
    counted: int = 0  # how many of the sent commands the supervisor has seen finished
    started: float = field(default_factory=time.monotonic)
    early_deaths: int = 0  # deaths in a row, this one's predecessors included, each soon after start
    respawn_at: float | None = None  # set once found dead: when its replacement starts

    def respawn_delay(self) -> float:
        """Note this worker's death; seconds until its replacement may start (doubling from
        1 s while workers keep dying young, so a worker that cannot start does not spin)."""
        if time.monotonic() - self.started >= EARLY_DEATH_S:
            self.early_deaths = 0
            return 0.0
        self.early_deaths += 1
        return min(MAX_RESPAWN_DELAY_S, 2.0 ** (self.early_deaths - 1))

    def backlog(self) -> int:
        return len(self.unfinished) - (self.done.value - self.counted)

    def settle(self) -> None:
        """Forget the commands the worker has finished."""
        finished = self.done.value
        while self.counted < finished and self.unfinished:
            self.unfinished.popleft()
            self.counted += 1


class CommandWorkers:
    """Worker processes that run `/eice` commands after their ack.

    Args:
        settings: what each worker builds its runtime from (the server's own settings).
        processes: worker processes (each runs one command at a time).
        nice: how much lower the workers' scheduling priority is than the server's.
        on_lost: called in the server with the body of a command that could not run.
        inbox: the server's inbox folder (`bot.inbox`): workers hold it and remove each
            command's file when it is done.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        processes: int = 2,
        nice: int = WORKER_NICE,
        on_lost: Callable[[Body], None] | None = None,
        inbox: Path | None = None,
    ) -> None:
        if processes < 1:
            raise ConfigError(f"command workers must be at least 1, not {processes}")
        self.settings = settings
        self.processes = processes
        self.nice = nice
        self.on_lost = on_lost or (lambda _body: None)
        self.inbox = inbox
        self._context = multiprocessing.get_context("spawn")  # never fork a threaded server
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._stopping = False
        self._stopped = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._spawned = itertools.count(1)
        self._held: list[tuple[Body, int]] = []  # arrived while every worker was dead
        self.restarts = 0  # workers started in place of dead ones

    def start(self) -> None:
        """Start the worker processes and their supervisor; returns at once (commands queue
        in the pipes until a worker is up)."""
        with self._lock:
            self._workers = [self._spawn() for _ in range(self.processes)]
        self._supervisor = threading.Thread(target=self._supervise, name="eice-command-workers", daemon=True)
        self._supervisor.start()

    def submit(self, body: Body) -> None:
        """Queue one acked command with the least busy worker; returns at once."""
        self._send(dict(body), 1)

    def stop(self) -> None:
        """Run what is queued, then end the workers."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            workers = list(self._workers)
        self._stopped.set()
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.jobs.send(None)  # after everything queued before it
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error("command worker %s did not finish in time; ending it", worker.process.pid)
                worker.process.kill()
                worker.process.join()
            worker.jobs.close()
        for worker in workers:  # a worker that died while draining leaves its commands unrun
            worker.settle()
            for body, _attempt in worker.unfinished:
                self.on_lost(body)
        with self._lock:
            held, self._held = self._held, []
        for body, _attempt in held:
            self.on_lost(body)

    def _spawn(self, early_deaths: int = 0) -> _Worker:
        reader, writer = self._context.Pipe(duplex=False)
        _grow_pipe(writer)
        done = self._context.Value("q", 0, lock=False)
        process = self._context.Process(
            target=_worker_main,
            # os.getpid(): a worker notices its server is gone when its parent changes
            args=(reader, done, self.settings, self.nice, os.getpid(), self.inbox),
            name=f"eice-command-worker-{next(self._spawned)}",
            daemon=True,
        )
        process.start()
        reader.close()  # the worker holds its end; ours would keep the pipe open after it died
        return _Worker(process=process, jobs=writer, done=done, early_deaths=early_deaths)

    def _send(self, body: Body, attempt: int) -> None:
        with self._lock:
            live = [worker for worker in self._workers if worker.respawn_at is None]
            if self._stopping or not self._workers:
                log.error("command arrived after the workers stopped")
                lost = True
            elif not live:  # all dead and waiting to restart: the first one up takes it
                lost = False
                self._held.append((body, attempt))
            else:
                lost = False
                worker = min(live, key=_Worker.backlog)
                # Pickled and written right here: no other thread of this process wakes. A
                # worker that is gone makes this fail; the supervisor sends it elsewhere.
                with contextlib.suppress(OSError):
                    worker.jobs.send(body)
                worker.unfinished.append((body, attempt))
        if lost:
            self.on_lost(body)

    def _supervise(self) -> None:
        while not self._stopped.wait(SUPERVISE_EVERY_S):
            self._check()

    def _check(self) -> None:
        """Forget finished commands; replace a dead worker (at once, or after a growing delay
        while workers keep dying young) and send its unfinished commands again."""
        again: list[tuple[Body, int]] = []
        held: list[tuple[Body, int]] = []
        with self._lock:
            if self._stopping:
                return
            now = time.monotonic()
            for index, worker in enumerate(self._workers):
                if worker.respawn_at is None:
                    alive = worker.process.is_alive()  # first: what a dead one finished is counted below
                    worker.settle()
                    if alive:
                        continue
                    delay = worker.respawn_delay()
                    log.error(
                        "command worker %s died (exit %s); starting another%s",
                        worker.process.pid,
                        worker.process.exitcode,
                        f" in {delay:.0f} s ({worker.early_deaths} died soon after start)" if delay else "",
                    )
                    again.extend(worker.unfinished)
                    worker.unfinished.clear()
                    worker.jobs.close()
                    worker.respawn_at = now + delay
                if worker.respawn_at <= now:
                    self._workers[index] = self._spawn(worker.early_deaths)
                    self.restarts += 1
            if any(worker.respawn_at is None for worker in self._workers):
                held, self._held = self._held, []
        for body, attempt in held:  # never sent: not an attempt yet
            self._send(body, attempt)
        for body, attempt in again:
            if attempt >= ATTEMPTS:
                self.on_lost(body)
            else:
                self._send(body, attempt + 1)
