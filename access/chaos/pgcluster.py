"""A private PostgreSQL cluster for chaos runs: initdb + pg_ctl in a temp folder on its own
port, never the machine's server, so it can be restarted (fast or immediate) at will.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from access.chaos.procs import free_port
from access.migrate import upgrade

BIN = Path(os.environ.get("EICE_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PrivateCluster:
    """`with PrivateCluster(folder) as pg:` starts it; `restart("fast"|"immediate")`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.data = folder / "data"
        self.log = folder / "postgres.log"
        self.restarts: list[str] = []
        self._user = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(BIN / argv[0]), *argv[1:]]
        if self._user:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def __enter__(self) -> PrivateCluster:
        if not (BIN / "initdb").exists():
            raise RuntimeError(f"no PostgreSQL binaries in {BIN} (set EICE_PG_BIN)")
        if self._user:
            # A folder the postgres user may write, outside any root-only parent.
            self._tmp = tempfile.TemporaryDirectory(prefix="eice-chaos-pg-")
            self.folder = Path(self._tmp.name)
            self.data, self.log = self.folder / "data", self.folder / "postgres.log"
            entry = pwd.getpwnam(self._user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                "fsync = off\nmax_connections = 200\n"
            )
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._run("pg_ctl", "-D", str(self.data), "stop", "-m", "immediate", "-w", check=False)
        if self._tmp is not None:
            self._tmp.cleanup()
        else:
            shutil.rmtree(self.data, ignore_errors=True)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def restart(self, mode: str) -> None:
        """Stop with `mode` ("fast" or "immediate") and start again; blocks until it accepts."""
        self._run("pg_ctl", "-D", str(self.data), "stop", "-m", mode, "-w", "-t", "60")
        self.start()
        self.restarts.append(mode)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str = "eice") -> str:
        """A new migrated database on this cluster; returns its URL."""
        engine: Any = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        url = self.url.rsplit("/", 1)[0] + f"/{name}"
        upgrade(url)
        return url
