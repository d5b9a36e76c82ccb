"""Run the Alembic migrations from code (`eice migrate`, the Lambda migrate function, tests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations
from access.db import normalise_url


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged `migrations/` folder and `url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision` (idempotent)."""
    command.upgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    from access.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@contextmanager
def scratch_postgres(server_url: str, prefix: str) -> Iterator[str]:
    """A uniquely named, migrated database on the server at `server_url`, dropped afterwards.

    Used by the tests, `eice bench` and `eice chaos`; connections still open at the end
    are terminated so that the drop cannot hang.
    """
    from sqlalchemy import create_engine, make_url, text

    admin_url = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = admin_url.set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
