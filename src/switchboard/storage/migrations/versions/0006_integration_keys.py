"""integration_keys: credentials a customer hands to a CRM instead of its password

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 17:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import switchboard.storage.sql.tables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "integration_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "last_used_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "revoked_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_integration_keys_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_keys")),
        sa.UniqueConstraint("digest", name=op.f("uq_integration_keys_digest")),
    )
    op.create_index(
        op.f("ix_integration_keys_account_id"), "integration_keys", ["account_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_integration_keys_account_id"), table_name="integration_keys")
    op.drop_table("integration_keys")
