"""Index grants by the AWS request IDs of their PutRolePolicy and DeleteRolePolicy.

The CloudTrail collector matches the bot's own IAM events to grants by request ID,
a page of 50 at a time. Without these indexes every page scanned the whole grants
table inside a write transaction, which during a revocation storm held up the
reaper's commits for seconds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 20:10:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.create_index('ix_grants_put_request', ['put_request_id'], unique=False)
        batch_op.create_index('ix_grants_delete_request', ['delete_request_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.drop_index('ix_grants_delete_request')
        batch_op.drop_index('ix_grants_put_request')
