"""campaign text and ids

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("numeric_id", sa.BigInteger(), nullable=False))
        batch_op.add_column(sa.Column("transaction_id", sa.String(length=36), nullable=False))
        batch_op.add_column(sa.Column("sender", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("template", sa.Text(), nullable=False))
        batch_op.create_unique_constraint(batch_op.f("uq_campaigns_numeric_id"), ["numeric_id"])


def downgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_campaigns_numeric_id"), type_="unique")
        batch_op.drop_column("template")
        batch_op.drop_column("sender")
        batch_op.drop_column("transaction_id")
        batch_op.drop_column("numeric_id")
