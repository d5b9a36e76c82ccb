"""The outbox dispatcher: claims due notification rows, delivers them, retries politely.

Runs as a thread in `eice serve` (kicked after each lazy listener and every second),
inline on Lambda (after each lazy listener and in the tick).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from access.failpoints import failpoint
from access.grants.models import Grant
from access.outbox.service import claim, mark_failed, mark_sent
from access.runtime import Runtime
from bot.notify import Note, Notifier

log = logging.getLogger(__name__)

LEASE_S = 60.0


def retry_after_s(exc: SlackApiError) -> float | None:
    """Slack's Retry-After in seconds for a 429, else None."""
    response = exc.response
    if getattr(response, "status_code", None) != 429:
        return None
    headers = {k.lower(): v for k, v in (getattr(response, "headers", None) or {}).items()}
    value = headers.get("retry-after")
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(1.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


class OutboxDispatcher:
    """Delivers the outbox to Slack, one batch at a time, in row order.

    Args:
        rt: the runtime.
        client: a WebClient (its own rate-limit retries off: a 429 reschedules the row).
        on_revoked: observer for revoked grants (metrics).
        batch: rows claimed per pass.
    """

    def __init__(
        self,
        rt: Runtime,
        client: WebClient,
        *,
        on_revoked: Callable[[Grant], None] | None = None,
        batch: int = 50,
    ) -> None:
        self.rt = rt
        self.notifier = Notifier(rt, client, on_revoked=on_revoked)
        self.batch = batch
        self.worker = f"{rt.worker_id}:outbox"
        self._pass_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # running

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="eice-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def kick(self) -> None:
        """Deliver soon: wake the thread, or (no thread, e.g. Lambda) deliver now."""
        if self._thread is not None:
            self._wake.set()
            return
        try:
            self.drain()
        except Exception:
            log.exception("outbox pass failed")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.drain()
            except Exception:
                log.exception("outbox pass failed; retrying")

    def drain(self, max_passes: int = 20) -> int:
        """Run passes until nothing more is due now; returns rows delivered."""
        total = 0
        for _ in range(max_passes):
            sent, claimed = self.dispatch_once()
            total += sent
            if claimed < self.batch:
                break
        return total

    # one pass

    def dispatch_once(self) -> tuple[int, int]:
        """Claim due rows and deliver them in order; returns (sent, claimed)."""
        with self._pass_lock:
            now = self.rt.clock.now()
            with self.rt.db.transaction() as session:
                rows = claim(session, worker=self.worker, now=now, lease_s=LEASE_S, limit=self.batch)
                notes = [
                    Note(r.id, r.kind, r.request_id, r.grant_id, dict(r.payload), r.attempts) for r in rows
                ]
            sent = 0
            for index, note in enumerate(notes):
                failpoint("after_commit_before_slack_update")
                try:
                    after = self.notifier.deliver(note)
                except SlackApiError as exc:
                    wait = retry_after_s(exc)
                    if wait is not None:
                        # Rate limited: this row and the rest of the batch wait as Slack asks.
                        for later in notes[index:]:
                            self._failed(later, f"rate limited by Slack ({exc.response.get('error')})", wait)
                        return sent, len(notes)
                    self._failed(note, f"slack: {exc.response.get('error')}", None)
                    continue
                except Exception as exc:
                    log.exception("outbox: delivering %s #%s failed", note.kind, note.id)
                    self._failed(note, f"{type(exc).__name__}: {exc}", None)
                    continue
                with self.rt.db.transaction() as session:
                    if after is not None:
                        after(session)
                    mark_sent(session, note.id, worker=self.worker, now=self.rt.clock.now())
                sent += 1
            return sent, len(notes)

    def _failed(self, note: Note, error: str, wait_s: float | None) -> None:
        with self.rt.db.transaction() as session:
            from access.outbox.models import OutboxMessage

            row = session.get(OutboxMessage, note.id)
            attempts = row.attempts if row is not None else 0
            if wait_s is None:
                wait_s = min(300.0, 2.0**attempts) * random.uniform(0.8, 1.2)
            mark_failed(
                session,
                note.id,
                worker=self.worker,
                now=self.rt.clock.now(),
                error=error,
                retry_in_s=wait_s,
            )
