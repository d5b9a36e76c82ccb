"""Migrations 0003 (grants (created_at, id)), 0004 (grants by request ID), 0005 (the
installation ID), 0006 (the collector's late passes) and 0007 (grants' allow_describe)
down and up, on both databases.

Also checks that the models and the migrated schema agree (Alembic's own comparison),
and that the unfiltered `/eice audit` page is answered from the new index.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, func, inspect, select, text

from access.audit.queries import audit_query
from access.db import Database
from access.grants.models import Grant
from access.installation import Installation
from access.migrate import alembic_config, current, upgrade
from access.models import Base
from tests.audit.conftest import make_grant, now, role_person
from tests.dbs import postgres_database

INDEX = "ix_grants_created"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, migrated to head (the shared test database stays untouched)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrations.sqlite'}"
        upgrade(url)
        yield url
        return
    with postgres_database("eice_migrations") as url:
        yield url


def _grant_indexes(db: Database) -> dict[str, list[Any]]:
    return {str(ix["name"]): list(ix["column_names"]) for ix in inspect(db.engine).get_indexes("grants")}


def _columns(db: Database, table: str) -> list[str]:
    return [str(c["name"]) for c in inspect(db.engine).get_columns(table)]


def _schema_drift(db: Database) -> list[Any]:
    with db.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def _installation_ids(db: Database) -> list[str]:
    with db.transaction() as session:
        return list(session.scalars(select(Installation.id)))


def test_0003_to_0007_go_down_and_up_again_keeping_the_data(fresh_url: str) -> None:
    db = Database(fresh_url)
    request_indexes = {
        "ix_grants_put_request": ["put_request_id"],
        "ix_grants_delete_request": ["delete_request_id"],
    }
    try:
        assert current(fresh_url) == "0007"
        [owner] = _installation_ids(db)
        assert re.fullmatch(r"[0-9a-f]{16}", owner)
        upgrade(fresh_url)  # again: nothing changes
        assert _installation_ids(db) == [owner]
        assert _grant_indexes(db)[INDEX] == ["created_at", "id"]
        assert request_indexes.items() <= _grant_indexes(db).items()
        assert _schema_drift(db) == []
        with db.transaction() as session:
            kept = make_grant(session, role_person("alice"), starts_at=now()).id

        command.downgrade(alembic_config(fresh_url), "-1")
        assert current(fresh_url) == "0006"
        assert "allow_describe" not in _columns(db, "grants")
        with db.transaction() as session:
            assert session.scalar(select(func.count()).select_from(Grant)) == 1

        assert "late_pass_at" in _columns(db, "collector_watermarks")
        command.downgrade(alembic_config(fresh_url), "-1")
        assert current(fresh_url) == "0005"
        assert "late_pass_at" not in _columns(db, "collector_watermarks")
        assert _installation_ids(db) == [owner]  # only 0006's column went

        command.downgrade(alembic_config(fresh_url), "-1")
        assert current(fresh_url) == "0004"
        assert "installation" not in inspect(db.engine).get_table_names()

        command.downgrade(alembic_config(fresh_url), "-1")
        assert current(fresh_url) == "0003"
        assert not set(request_indexes) & set(_grant_indexes(db))
        assert INDEX in _grant_indexes(db)  # only 0004's indexes went

        command.downgrade(alembic_config(fresh_url), "-1")
        assert current(fresh_url) == "0002"
        assert INDEX not in _grant_indexes(db)
        assert "ix_grants_instance" in _grant_indexes(db)  # only 0003's index went

        upgrade(fresh_url)
        assert current(fresh_url) == "0007"
        assert "late_pass_at" in _columns(db, "collector_watermarks")
        assert len(_installation_ids(db)) == 1
        assert _grant_indexes(db)[INDEX] == ["created_at", "id"]
        assert request_indexes.items() <= _grant_indexes(db).items()
        with db.transaction() as session:
            assert session.scalar(select(func.count()).select_from(Grant)) == 1
            assert session.get(Grant, kept) is not None
            assert session.get(Grant, kept).allow_describe is False  # what grants had before 0007
    finally:
        db.dispose()


def _plan(db: Database, statement: str, params: Any) -> str:
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
            return "\n".join(str(row[-1]) for row in rows)
        # An empty table costs nothing to sort, so take the cheap way out away from the
        # planner: what is asked here is whether the index can answer the query at all.
        conn.execute(text("SET enable_seqscan = off"))
        conn.execute(text("SET enable_sort = off"))
        rows = conn.exec_driver_sql(f"EXPLAIN {statement}", params).all()
        return "\n".join(str(row[0]) for row in rows)


def test_the_unfiltered_audit_page_reads_grants_from_the_created_index(fresh_url: str) -> None:
    db = Database(fresh_url)
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if "FROM grants" in statement and not seen:
            seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.transaction() as session:
            make_grant(session, role_person("alice"), starts_at=now())
            assert len(audit_query(session, since=now() - timedelta(days=7), limit=50)) == 1
        [(statement, params)] = seen
        event.remove(db.engine, "before_cursor_execute", capture)
        plan = _plan(db, statement, params)
    finally:
        db.dispose()
    assert INDEX in plan, plan
    if db.dialect == "sqlite":
        assert "TEMP B-TREE" not in plan, plan  # no sort step: the index gives the order
