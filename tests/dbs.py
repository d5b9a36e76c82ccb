"""Throwaway databases for tests: a SQLite file, or a fresh PostgreSQL database per use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from access.migrate import scratch_postgres, upgrade

POSTGRES_URL = os.environ.get("EICE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def postgres_database(prefix: str = "eice_test") -> AbstractContextManager[str]:
    """Create a uniquely named database on the test server, migrated; drop it afterwards."""
    return scratch_postgres(POSTGRES_URL, prefix)


@contextmanager
def sqlite_database(folder: Path) -> Iterator[str]:
    url = f"sqlite:///{folder / 'eice.sqlite'}"
    upgrade(url)
    yield url


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """A migrated database of `kind` ("sqlite" or "postgres")."""
    if kind == "postgres":
        with postgres_database() as url:
            yield url
    else:
        with sqlite_database(folder) as url:
            yield url
