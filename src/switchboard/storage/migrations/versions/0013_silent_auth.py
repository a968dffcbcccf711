"""silent_auth_sessions: the SAUTH state of a verification (flowType=SAUTH)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import switchboard.storage.sql.tables

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "silent_auth_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("verification_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=40), nullable=False),
        sa.Column("destination", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("code_verifier", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "used_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "ended_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_silent_auth_sessions_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silent_auth_sessions")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_silent_auth_sessions_state_hash")),
        sa.UniqueConstraint(
            "verification_id", name=op.f("uq_silent_auth_sessions_verification_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("silent_auth_sessions")
