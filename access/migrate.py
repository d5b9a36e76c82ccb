"""Run the Alembic migrations from code (`eice migrate`, the Lambda migrate function, tests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations
from access.db import db_error_line, normalise_url


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged `migrations/` folder and `url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision` (idempotent)."""
    command.upgrade(alembic_config(url), revision)


def require_current(url: str, *, bring_up: bool = False) -> None:
    """Refuse a database that is not at the newest revision, with one line saying what to do
    (`bring_up`: migrate it first). A SQLite file that does not exist is not created."""
    from alembic.script import ScriptDirectory
    from sqlalchemy.exc import SQLAlchemyError

    from access.errors import ConfigError
    from access.settings import redact_url

    shown = redact_url(url)
    try:
        if bring_up:
            upgrade(url)
        else:
            _sqlite_file_must_exist(url)
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        at = current(url)
    except SQLAlchemyError as exc:
        raise ConfigError(f"cannot use database {shown}: {db_error_line(exc)}") from None
    if at != head:
        raise ConfigError(
            f"database {shown} is at revision {at or 'none'}, not {head}: run `eice migrate` first"
        )


def _sqlite_file_must_exist(url: str) -> None:
    from sqlalchemy.engine import make_url

    from access.errors import ConfigError

    parsed = make_url(normalise_url(url))
    path = parsed.database
    on_disk = parsed.get_backend_name() == "sqlite" and path not in (None, "", ":memory:")
    if on_disk and not Path(str(path)).exists():
        raise ConfigError(
            f"database file {Path(str(path)).resolve()} does not exist: run `eice migrate` first "
            "(or set EICE_DATABASE_URL to the bot's database)"
        )


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
