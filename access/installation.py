"""This installation's identity: a random ID made once, when the schema is created.

Every grant policy this installation writes carries it (the `Sid` of its first
statement), so the reconciler can tell a policy another bot wrote under the same naming
(a second installation in the account, with the same or no `deployment`) from an
orphan of its own, even one whose grant row is gone (a database restored from backup
keeps the ID, and its orphans are still recognised).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from access.db import Base, UtcDateTime
from access.errors import ConfigError


class Installation(Base):
    """One row, written by the migration that creates the table."""

    __tablename__ = "installation"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


def installation_id(session: Session) -> str:
    """The ID stored in the database (ConfigError when the schema predates it: run `eice migrate`)."""
    found = session.scalars(select(Installation.id).order_by(Installation.created_at).limit(1)).first()
    if found is None:
        raise ConfigError("the database has no installation ID; run `eice migrate`")
    return found
