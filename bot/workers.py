"""Command workers: the work after an `/eice` ack, in separate low-priority processes.

Why processes: what follows an ack (botocore parsing, SQLAlchemy, pre-flight, Block Kit)
is Python CPU work. Run on threads of the serving process it holds the GIL that the ack
threads need, and a burst of commands delays every ack behind it. In their own processes,
at a lower scheduling priority (`nice`), it cannot. Each worker builds its own runtime,
database engine, boto3 clients and Slack client from the same settings.

Delivery is at least once: a job whose worker process died is run again on a fresh pool
(the request flow refuses a second pending request for the same instance), and a job that
still cannot run is answered with an error, so an acked command is never dropped without a
word. A graceful stop drains the queue; a killed server loses its queued jobs, as the
in-process lazy listeners did.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from access.errors import ConfigError
from access.settings import Settings

if TYPE_CHECKING:
    from bot.context import Bot

log = logging.getLogger(__name__)
WORKER_NICE = 10
ATTEMPTS = 2

Body = dict[str, Any]
_worker_bot: Bot | None = None


def _exit_with_server(server_pid: int, every_s: float = 1.0) -> None:
    """End this worker once the server is gone (killed servers would leave it waiting forever)."""
    while os.getppid() == server_pid:
        time.sleep(every_s)
    os._exit(0)


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


def _init_worker(settings: Settings, nice: int, server_pid: int) -> None:
    """Process start-up: lower priority, own runtime and Slack services."""
    global _worker_bot
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


def _ready() -> int:
    return os.getpid()


def _run_command(body: Body) -> None:
    from bot.listeners.commands import handle_eice

    if _worker_bot is None:
        raise RuntimeError("command worker was not initialised")
    # The worker delivers what its command queued (the approval card) itself, so that
    # Block Kit and Slack calls stay out of the serving process too.
    handle_eice(_worker_bot, body, kick=True)


class CommandWorkers:
    """A pool of worker processes that run `/eice` commands after their ack.

    Args:
        settings: what each worker builds its runtime from (the server's own settings).
        processes: worker processes (each runs one command at a time).
        nice: how much lower the workers' scheduling priority is than the server's.
        on_lost: called in the server with the body of a command that could not run.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        processes: int = 2,
        nice: int = WORKER_NICE,
        on_lost: Callable[[Body], None] | None = None,
    ) -> None:
        if processes < 1:
            raise ConfigError(f"command workers must be at least 1, not {processes}")
        self.settings = settings
        self.processes = processes
        self.nice = nice
        self.on_lost = on_lost or (lambda _body: None)
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._stopping = False

    def start(self) -> None:
        """Start the worker processes; returns at once (commands queue until a worker is up).

        The server has already built the same runtime from the same settings, so a worker
        that cannot start is a rare failure: it is logged, and its commands are answered
        with an error.
        """
        with self._lock:
            self._pool = self._new_pool()
            pool = self._pool
        for _ in range(self.processes):  # each submit with no idle worker spawns one
            pool.submit(_ready).add_done_callback(self._started)

    def submit(self, body: Body) -> None:
        """Queue one acked command; returns at once."""
        self._submit(dict(body), 1)

    def stop(self) -> None:
        """Run what is queued, then end the workers."""
        with self._lock:
            self._stopping = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _started(self, future: Future[int]) -> None:
        exc = future.exception()
        if exc is not None:
            log.error("a command worker did not start: %s", exc)
        else:
            log.info("command worker %s ready", future.result())

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("spawn"),  # never fork a threaded server
            initializer=_init_worker,
            initargs=(self.settings, self.nice, os.getpid()),  # a server killed early is noticed too
        )

    def _submit(self, body: Body, attempt: int) -> None:
        with self._lock:
            pool = self._pool
        if pool is None:
            log.error("command arrived after the workers stopped")
            self.on_lost(body)
            return
        try:
            future = pool.submit(_run_command, body)
        except (BrokenProcessPool, RuntimeError):
            self._retry_or_lose(body, attempt, pool)
            return
        future.add_done_callback(lambda f: self._finished(f, body, attempt, pool))

    def _finished(self, future: Future[None], body: Body, attempt: int, pool: ProcessPoolExecutor) -> None:
        exc = future.exception()
        if exc is None:
            return
        if isinstance(exc, BrokenProcessPool):
            self._retry_or_lose(body, attempt, pool)
        else:  # handle_eice answers errors itself; this is a bug in the plumbing
            log.error("command job failed: %s", type(exc).__name__)
            self.on_lost(body)

    def _retry_or_lose(self, body: Body, attempt: int, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._stopping or attempt >= ATTEMPTS:
                retry = False
            else:
                retry = True
                if self._pool is broken:  # the first job to notice replaces the pool
                    log.error("a command worker died; starting a fresh pool")
                    self._pool = self._new_pool()
                    broken.shutdown(wait=False)
        if retry:
            self._submit(body, attempt + 1)
        else:
            self.on_lost(body)
