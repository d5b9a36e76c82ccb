"""The CloudTrail collector's late passes, per source.

Each poll starts a short overlap before the watermark; once an hour (the `[audit]`
settings) a late pass also reads back much further, for events CloudTrail delivered
later than the overlap, a few pages a poll. `late_pass_at` is when the last one began
(NULL, as every row has after this upgrade: due now); `late_from`..`late_until` is
what the one under way has still to read.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('collector_watermarks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('late_pass_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('late_from', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('late_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('collector_watermarks', schema=None) as batch_op:
        batch_op.drop_column('late_until')
        batch_op.drop_column('late_from')
        batch_op.drop_column('late_pass_at')
