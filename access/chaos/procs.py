"""Bot processes for chaos runs: `eice serve --http` spawned, health-checked, killed, paused."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

SIGNING_SECRET = "chaos-signing-secret-0123456789abcdef"
FAILPOINT_EXIT = 77


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BotProcess:
    """One running `eice serve --http`."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_at: datetime
    failpoint: str | None = None
    stopped: bool = False
    ended: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def healthy(self) -> bool:
        if not self.alive() or self.stopped:
            return False
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def failpoint_hit(self) -> str | None:
        """The failpoint this process died at, if it did."""
        if self.proc.poll() != FAILPOINT_EXIT:
            return None
        text = self.log_path.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("failpoint ") and line.endswith(": exiting"):
                return line.split()[1].rstrip(":")
        return None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False

    def kill(self) -> None:
        """SIGKILL (continuing it first if paused, so it dies at once) and reap."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.stopped = False

    def terminate(self, timeout: float = 15.0) -> None:
        """A clean stop: SIGTERM, then SIGKILL if it lingers."""
        if self.stopped:
            self.signal(signal.SIGCONT)
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the bot gets SIGKILL if the harness dies, so no bot outlives a killed run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn_bot(name: str, env: dict[str, str], workdir: Path, *, failpoint: str | None = None) -> BotProcess:
    """Start `eice serve --http` on a free port with `env` (not waiting for health)."""
    port = free_port()
    log_path = workdir / f"{name}-{port}.log"
    full = dict(env)
    if failpoint:
        full["EICE_FAILPOINTS"] = failpoint
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "access.cli.main",
                "serve",
                "--http",
                "--port",
                str(port),
                "--threads",
                "8",
            ],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
    return BotProcess(name, port, proc, log_path, datetime.now(UTC), failpoint)


def wait_healthy(bot: BotProcess, timeout: float = 60.0) -> bool:
    """True once /healthz answers 200; False if the process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not bot.alive():
            return False
        if bot.healthy():
            return True
        time.sleep(0.1)
    return False
