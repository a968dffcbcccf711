"""worker_presence: live delivery workers, among which cluster-wide limits are divided

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 17:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import switchboard.storage.sql.tables

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_presence",
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column(
            "seen_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_worker_presence")),
    )


def downgrade() -> None:
    op.drop_table("worker_presence")
