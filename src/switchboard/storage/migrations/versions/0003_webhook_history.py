"""webhook delivery history and endpoint state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 14:15:39.476969
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import switchboard.storage.sql.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "callback_disabled_at",
                switchboard.storage.sql.tables.UtcDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("callback_disabled_reason", sa.String(length=400), nullable=True)
        )

    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verification_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("recent_attempts", sa.JSON(), server_default="[]", nullable=False)
        )
        batch_op.add_column(
            sa.Column("replays", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "dead_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "replayed_at",
                switchboard.storage.sql.tables.UtcDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.create_index(
            "ix_webhook_deliveries_verification", ["verification_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_verification")
        batch_op.drop_column("replayed_at")
        batch_op.drop_column("dead_at")
        batch_op.drop_column("replays")
        batch_op.drop_column("recent_attempts")
        batch_op.drop_column("verification_id")

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("callback_disabled_reason")
        batch_op.drop_column("callback_disabled_at")
