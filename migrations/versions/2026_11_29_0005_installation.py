"""The installation's identity: one row with a random ID, written here once.

Grant policies carry it, so that the reconciler can tell another installation's
policies (same naming, same account) from its own orphans. Going down loses it: the
policies of grants still live would then look like another installation's.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 03:00:00.000000
"""

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    installation = op.create_table('installation',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_installation'))
    )
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == 'sqlite':
        now = now.replace(tzinfo=None)  # as UtcDateTime stores it there
    op.bulk_insert(installation, [{'id': secrets.token_hex(8), 'created_at': now}])


def downgrade() -> None:
    op.drop_table('installation')
