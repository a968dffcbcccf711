"""console: operators, console sessions and the daily message statistics

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import switchboard.storage.sql.tables

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(
        name, switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=nullable
    )


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("token_version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("email", name=op.f("uq_operators_email")),
    )
    op.create_table(
        "console_sessions",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("token_version", sa.Integer(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("expires_at", nullable=False),
        _ts("revoked_at"),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_console_sessions")),
    )
    op.create_index(
        "ix_console_sessions_subject", "console_sessions", ["kind", "subject_id"], unique=False
    )
    op.create_table(
        "message_stats_daily",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("country_code", sa.String(length=4), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "account_id",
            "day",
            "channel",
            "country_code",
            "outcome",
            name=op.f("pk_message_stats_daily"),
        ),
    )


def downgrade() -> None:
    op.drop_table("message_stats_daily")
    op.drop_index("ix_console_sessions_subject", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("operators")
