"""When the CloudTrail collector last looked back over its whole late-delivery window.

Each poll starts a short overlap before the watermark; about once an hour (the
`[audit]` settings) it looks back much further, for events CloudTrail delivered
later than the overlap. The column says when that last happened per source; NULL
(every row after this upgrade) means "due now".

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


def downgrade() -> None:
    with op.batch_alter_table('collector_watermarks', schema=None) as batch_op:
        batch_op.drop_column('late_pass_at')
