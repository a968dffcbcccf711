"""fraud_blocks, fraud_safe_list, fraud_counters: the fraud guard's records and counts

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 17:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import switchboard.storage.sql.tables

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = switchboard.storage.sql.tables.UtcDateTime
    op.create_table(
        "fraud_blocks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=32), nullable=False),
        sa.Column("country_code", sa.String(length=4), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("verification_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("figures", sa.JSON(), server_default="{}", nullable=False),
        sa.Column("created_at", utc(timezone=True), nullable=False),
        sa.Column("until", utc(timezone=True), nullable=True),
        sa.Column("hits", sa.Integer(), server_default="1", nullable=False),
        sa.Column("last_hit_at", utc(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_fraud_blocks_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fraud_blocks")),
    )
    op.create_index(
        "ix_fraud_blocks_account_time", "fraud_blocks", ["account_id", "created_at"], unique=False
    )
    op.create_index(op.f("ix_fraud_blocks_until"), "fraud_blocks", ["until"], unique=False)
    op.create_index(
        op.f("ix_fraud_blocks_verification_id"), "fraud_blocks", ["verification_id"], unique=False
    )
    op.create_table(
        "fraud_safe_list",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("entry", sa.String(length=20), nullable=False),
        sa.Column("created_at", utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_fraud_safe_list_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "entry", name=op.f("pk_fraud_safe_list")),
    )
    op.create_table(
        "fraud_counters",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("minute", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "name", "minute", name=op.f("pk_fraud_counters")),
    )
    op.create_index("ix_fraud_counters_minute", "fraud_counters", ["minute"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_fraud_counters_minute", table_name="fraud_counters")
    op.drop_table("fraud_counters")
    op.drop_table("fraud_safe_list")
    op.drop_index(op.f("ix_fraud_blocks_verification_id"), table_name="fraud_blocks")
    op.drop_index(op.f("ix_fraud_blocks_until"), table_name="fraud_blocks")
    op.drop_index("ix_fraud_blocks_account_time", table_name="fraud_blocks")
    op.drop_table("fraud_blocks")
