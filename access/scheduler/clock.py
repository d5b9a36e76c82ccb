"""APScheduler 3 as the in-process clock. Jobs are triggers only; the rows hold the state.

An interval job and a date job at each grant's expiry both just wake the reaper
thread, so reaper passes never overlap within a process and a burst of expiries
coalesces into one pass. Between passes the thread also sleeps no later than the
next expiry in the table, so grants it has no date job for are revoked on time too.
Jobs live in memory: a crash loses nothing, because the next start-up reaps
whatever the table says is due.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler

from access.grants import service
from access.runtime import Runtime
from access.scheduler.reaper import ReapReport, reap
from access.scheduler.reconciler import reconcile

log = logging.getLogger(__name__)


class GrantClock:
    """Runs the reaper on time, the reconciler and any extra periodic ticks."""

    def __init__(
        self,
        rt: Runtime,
        *,
        reconcile_every_s: float = 300.0,
        extra_ticks: dict[str, tuple[float, Callable[[], object]]] | None = None,
    ) -> None:
        self.rt = rt
        self.reconcile_every_s = reconcile_every_s
        self.extra_ticks = extra_ticks or {}
        self.scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        self._reaping = False
        self._last_work_at = float("-inf")
        self.last_report: ReapReport | None = None
        # Kept for the process's life: a storm runs many short passes.
        self._pool = ThreadPoolExecutor(max_workers=rt.revoke_workers, thread_name_prefix="eice-reaper")
        self._housekept_at = float("-inf")

    def catch_up(self) -> ReapReport:
        """Reap and reconcile once, synchronously: start-up runs this before taking requests."""
        report = reap(self.rt)
        try:
            reconcile(self.rt)
        except Exception:
            log.exception("start-up reconcile failed; it runs again on schedule")
        return report

    def busy(self) -> bool:
        """A reaper pass is running, or one did work within the last second."""
        return self._reaping or time.monotonic() - self._last_work_at < 1.0

    def start(self) -> None:
        self.rt.on_expiry_known = self.watch
        self.rt.revoking_now = self.busy
        self._thread = threading.Thread(target=self._loop, name="eice-reaper", daemon=True)
        self._thread.start()
        self.scheduler.add_job(self.wake, "interval", seconds=self.rt.reaper_interval_s, id="reaper")
        self.scheduler.add_job(self._reconcile, "interval", seconds=self.reconcile_every_s, id="reconciler")
        for name, (every_s, func) in self.extra_ticks.items():
            self.scheduler.add_job(self._guard(name, func), "interval", seconds=every_s, id=name)
        self.scheduler.start()
        with self.rt.db.transaction() as session:
            for grant in service.live_grants(session):
                self.watch(grant.id, grant.expires_at)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False)

    def watch(self, grant_id: str, expires_at: datetime) -> None:
        """A date job at the grant's expiry (replacing any earlier one for it)."""
        if not self.scheduler.running:
            return
        self.scheduler.add_job(
            self.wake, "date", run_date=expires_at, id=f"expire:{grant_id}", replace_existing=True
        )

    def wake(self) -> None:
        self._wake.set()

    def _next_wait_s(self) -> float:
        """Seconds until the next known expiry, capped at the reaper interval.

        Reading it from the table covers grants this process never saw applied
        (another replica's, or rows written while it was down), which have no date job.
        """
        interval = self.rt.reaper_interval_s
        try:
            now = self.rt.clock.now()
            with self.rt.db.transaction() as session:
                upcoming = service.next_expiry(session, after=now)
        except Exception:
            log.exception("reaper: could not read the next expiry; polling on the interval")
            return interval
        if upcoming is None:
            return interval
        # A few ms late on purpose, so the grant is due when the pass claims.
        return min(interval, max(0.0, (upcoming - now).total_seconds()) + 0.005)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self._next_wait_s())
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                started = time.monotonic()
                housekeeping = started - self._housekept_at >= self.rt.reaper_interval_s
                self._reaping = True
                self.last_report = reap(self.rt, pool=self._pool, housekeeping=housekeeping)
                if housekeeping:
                    self._housekept_at = started
                if self.last_report.work_done:
                    self._last_work_at = time.monotonic()
                self.passes += 1
            except Exception:
                log.exception("reaper pass failed; retrying on the next tick")
            finally:
                self._reaping = False

    def _reconcile(self) -> None:
        try:
            report = reconcile(self.rt)
            if report.orphans_deleted or report.drift:
                log.warning(
                    "reconciler: %d orphans deleted, %d drifted",
                    len(report.orphans_deleted),
                    len(report.drift),
                )
                self.wake()
        except Exception:
            log.exception("reconcile pass failed")

    @staticmethod
    def _guard(name: str, func: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                func()
            except Exception:
                log.exception("tick %s failed", name)

        return run
