"""Acked Slack requests that survive a crash: a spool between the ack and the work's end.

Slack does not send a request again once it has been acked, so an approval click or an
`/eice` command whose server dies after the ack (and, for commands, whose worker
processes die with it: a whole-group SIGKILL, an OOM kill of the container) would be lost
without a word. Before the ack, the request's body is written to a file of its own; the
process that finishes the work (a lazy listener thread, or a command worker) removes it.
What is left belongs to a server that stopped before finishing it.

Layout: `<root>/<installation id>/server-<pid>-<random>/`, one folder per running server,
each with a `lock` file that the server and its command workers hold a shared `flock` on.
Another server of the same installation on the same host takes over a folder once it can
take that lock exclusively (every process that could still finish its requests is gone):
it sends each request through its own Bolt app again (as Socket Mode requests do, without
a signature: it was verified when it arrived), then removes the folder. Delivery is at
least once: a request whose work finished but whose file was not yet removed runs again,
and the flows answer a repeat ("already approved", "already pending") without acting twice.
A request older than `bot.server.REPLAY_WITHIN` is not run (nobody expects an access
request, approval or revocation to happen hours after the click): its user is told instead.

The files are written without `fsync`: they survive the process, not the machine. A file
costs one create, write and rename, tens of microseconds on the ack's path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from access.errors import ConfigError

log = logging.getLogger(__name__)
LOCK = "lock"
SUFFIX = ".json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

Body = dict[str, Any]


def default_root() -> Path:
    """Where acked requests are kept when `EICE_INBOX_DIR` is not set: `inbox` in systemd's
    `StateDirectory=` (`$STATE_DIRECTORY`), else `$XDG_STATE_HOME/eice/inbox`, else
    `~/.local/state/eice/inbox`."""
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd) / "inbox"
    state = os.environ.get("XDG_STATE_HOME")
    if not state:
        try:
            state = str(Path.home() / ".local" / "state")
        except (RuntimeError, KeyError) as exc:  # no HOME and no passwd entry
            raise ConfigError("no home folder for acked requests: set EICE_INBOX_DIR") from exc
    return Path(state) / "eice" / "inbox"


def _key(body: Body) -> str | None:
    """The file name for a request: its `trigger_id`, unique per command and click."""
    trigger = body.get("trigger_id")
    if not isinstance(trigger, str) or not trigger:
        return None
    return _UNSAFE.sub("_", trigger)[:200] + SUFFIX


def hold(folder: Path) -> int:
    """Open `folder`'s lock and take a shared lock on it; returns the descriptor (closing it,
    or ending the process, lets go)."""
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def settle_in(folder: Path, body: Body) -> None:
    """The work for `body` is over: remove its file from `folder` (no-op if it has none)."""
    key = _key(body)
    if key is not None:
        with contextlib.suppress(OSError):
            (folder / key).unlink(missing_ok=True)


class Inbox:
    """This server's spool folder under `root`.

    Args:
        root: the installation's folder (`<EICE_INBOX_DIR>/<installation id>`).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / f"server-{os.getpid()}-{secrets.token_hex(3)}"
        try:
            self.folder.mkdir(mode=0o700, parents=True)
            self._lock: int | None = hold(self.folder)
        except OSError as exc:
            raise ConfigError(
                f"cannot keep acked requests in {root} (EICE_INBOX_DIR): {exc.strerror}"
            ) from exc

    def keep(self, body: Body) -> bool:
        """Write `body` down before it is acked (whole or not at all: written, then renamed).

        Returns False when it could not be (no trigger_id, a full disk, the folder removed):
        logged, and the request is served all the same, only without the safety net.
        """
        key = _key(body)
        if key is None:
            log.warning("a Slack request without trigger_id is not kept past its ack")
            return False
        path = self.folder / key
        partial = path.with_suffix(".partial")
        data = json.dumps({"kept_ns": time.time_ns(), "body": body}, separators=(",", ":")).encode()
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(partial, path)
        except OSError as exc:
            log.error("could not keep an acked request in %s (%s): a crash would lose it", self.folder, exc)
            return False
        return True

    def settle(self, body: Body) -> None:
        """The work for `body` is over (see `settle_in`)."""
        settle_in(self.folder, body)

    def pending(self) -> int:
        """Requests this server has acked and not finished."""
        return sum(1 for _ in self.folder.glob("*" + SUFFIX))

    def adopt(self, replay: Callable[[Body, datetime], object]) -> int:
        """Take over the folders of servers that are gone: `replay` each request they left
        (with when it was kept), oldest first, then remove the folder. Returns how many
        requests were replayed."""
        replayed = 0
        for folder in self._others():
            try:
                fd = os.open(folder / LOCK, os.O_RDWR)
            except OSError:
                continue  # being created, or already taken over
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its server or one of its workers is still running
                left = _requests(folder)
                if left:
                    log.warning("replaying %d acked request(s) left by %s", len(left), folder.name)
                for path, body, kept_at in left:
                    try:
                        replay(body, kept_at)
                    except Exception:  # one bad file must not keep the others from running
                        log.exception("could not replay %s", path.name)
                    path.unlink(missing_ok=True)
                    replayed += 1
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                os.close(fd)
        return replayed

    def close(self) -> None:
        """Let go of the folder: removed when empty, else left for the next server to adopt."""
        if self._lock is None:
            return
        if not self.pending():
            shutil.rmtree(self.folder, ignore_errors=True)
        os.close(self._lock)
        self._lock = None

    def _others(self) -> Iterator[Path]:
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry != self.folder and entry.name.startswith("server-") and entry.is_dir():
                yield entry


def _requests(folder: Path) -> list[tuple[Path, Body, datetime]]:
    """The whole request files in `folder` with when each was kept, oldest first (unreadable
    ones are logged and dropped; a `.partial` file was never acked)."""
    found: list[tuple[int, Path, Body]] = []
    for path in folder.glob("*" + SUFFIX):
        try:
            kept = json.loads(path.read_bytes())
            found.append((int(kept["kept_ns"]), path, dict(kept["body"])))
        except (OSError, ValueError, KeyError, TypeError):
            log.error("dropping unreadable acked request %s", path)
    found.sort(key=lambda item: item[0])
    return [(path, body, datetime.fromtimestamp(ns / 1e9, UTC)) for ns, path, body in found]
