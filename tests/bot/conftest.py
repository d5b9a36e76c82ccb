"""Fixtures: sandboxes and one `eice serve --http` subprocess per database backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.aws.seed import Estate, seed_estate
from sandbox.aws.server import AwsSandbox
from sandbox.slack.server import SlackSandbox
from tests.bot.harness import World, config_toml, start_bot

PG_URL = os.environ.get("EICE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AWS_VARS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CA_BUNDLE")


@pytest.fixture(scope="package")
def aws() -> Iterator[AwsSandbox]:
    saved = dict(os.environ)
    sandbox = AwsSandbox().start()
    sandbox.reset()  # moto is process-wide: start from nothing
    for name in AWS_VARS:
        os.environ.pop(name, None)
    os.environ.update(sandbox.env())
    os.environ.update(AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    yield sandbox
    sandbox.stop()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="package")
def estate(aws: AwsSandbox) -> Estate:
    return seed_estate(aws)


@pytest.fixture(scope="package")
def slack() -> Iterator[SlackSandbox]:
    with SlackSandbox() as running:
        yield running


@pytest.fixture(scope="package")
def config_path(tmp_path_factory: pytest.TempPathFactory, estate: Estate) -> Path:
    path = tmp_path_factory.mktemp("config") / "eice.toml"
    path.write_text(config_toml(estate))
    return path


@pytest.fixture(scope="package")
def postgres_url() -> Iterator[str]:
    """A throwaway database for this session, dropped at the end (never the `test` db itself)."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"eice_bot_{uuid.uuid4().hex[:10]}"
    try:
        conn = psycopg.connect(admin_dsn, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {base.render_as_string()}: {exc}")
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield base.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _world(request: pytest.FixtureRequest, url: str) -> Iterator[World]:
    tmp = request.getfixturevalue("tmp_path_factory").mktemp("bot")
    world = start_bot(
        request.getfixturevalue("aws"),
        request.getfixturevalue("slack"),
        request.getfixturevalue("estate"),
        url,
        request.getfixturevalue("config_path"),
        tmp,
    )
    yield world
    world.stop()


@pytest.fixture(scope="package")
def sqlite_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    db = tmp_path_factory.mktemp("db") / "eice.sqlite"
    yield from _world(request, f"sqlite:///{db}")


@pytest.fixture(scope="package")
def postgres_world(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[World]:
    yield from _world(request, postgres_url)


@pytest.fixture
def world(sqlite_world: World) -> Iterator[World]:
    """The SQLite-backed bot, cleaned up after each test."""
    yield sqlite_world
    sqlite_world.cleanup()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_world(request: pytest.FixtureRequest) -> Iterator[World]:
    """Each backend's bot in turn."""
    w: World = request.getfixturevalue(f"{request.param}_world")
    yield w
    w.cleanup()
