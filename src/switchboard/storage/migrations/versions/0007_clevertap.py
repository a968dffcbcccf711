"""clevertap: the mid of each message CleverTap sent, and each customer's CleverTap settings

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 17:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import switchboard.storage.sql.tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clevertap_messages",
        sa.Column("ref", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("mid", sa.Text(), nullable=False),
        sa.Column("clevertap_account", sa.String(length=100), nullable=True),
        sa.Column("destination", sa.String(length=20), nullable=False),
        sa.Column(
            "created_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_clevertap_messages_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("ref", name=op.f("pk_clevertap_messages")),
    )
    op.create_index(
        "ix_clevertap_messages_reply",
        "clevertap_messages",
        ["account_id", "destination", "created_at"],
        unique=False,
    )
    op.create_table(
        "clevertap_settings",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("callback_url", sa.String(length=2048), nullable=True),
        sa.Column("default_country_code", sa.String(length=4), nullable=True),
        sa.Column(
            "updated_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_clevertap_settings_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_clevertap_settings")),
    )
    op.create_table(
        "clevertap_reply_numbers",
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_clevertap_reply_numbers_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_clevertap_reply_numbers")),
    )
    op.create_index(
        op.f("ix_clevertap_reply_numbers_account_id"),
        "clevertap_reply_numbers",
        ["account_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_clevertap_reply_numbers_account_id"), table_name="clevertap_reply_numbers"
    )
    op.drop_table("clevertap_reply_numbers")
    op.drop_index("ix_clevertap_messages_reply", table_name="clevertap_messages")
    op.drop_table("clevertap_settings")
    op.drop_table("clevertap_messages")
