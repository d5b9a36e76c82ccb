"""Grants remember whether their policy also allows the EC2 Describe calls.

A rule's `allow_describe` puts ec2:DescribeInstances and
ec2:DescribeInstanceConnectEndpoints into the grant policy (what `aws
ec2-instance-connect ssh` needs). An extension rewrites the policy from the grant
row, so the row keeps the choice made when it was approved. Grants from before this
upgrade had neither call: false.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('allow_describe', sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.drop_column('allow_describe')
