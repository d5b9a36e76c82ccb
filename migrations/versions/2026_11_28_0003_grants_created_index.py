"""Index grants by (created_at, id) for the unfiltered `/eice audit` page.

`audit_query` without an instance or user filter reads
`WHERE created_at >= :since ORDER BY created_at DESC, id DESC LIMIT :n`; this index
answers it with a backward range scan instead of sorting every grant in the window.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 18:40:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.create_index('ix_grants_created', ['created_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.drop_index('ix_grants_created')
