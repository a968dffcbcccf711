"""verification_days: the account's daily quota as a counter, not a count of the day's rows

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 17:40:00
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "verification_days",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("sends", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("account_id", "day", "shard", name=op.f("pk_verification_days")),
    )
    # Carry today's sends over, so an upgrade in the middle of a day keeps the quota's count.
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = midnight.replace(tzinfo=None) if op.get_bind().dialect.name == "sqlite" else midnight
    verifications = sa.table(
        "verifications",
        sa.column("account_id", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("is_test", sa.Boolean),
    )
    counts = Counter(
        row.account_id
        for row in op.get_bind().execute(
            sa.select(verifications.c.account_id).where(
                verifications.c.created_at >= since,
                verifications.c.created_at < since + timedelta(days=1),
                sa.not_(verifications.c.is_test),
            )
        )
    )
    if counts:
        day = midnight.strftime("%Y-%m-%d")
        op.bulk_insert(
            table,
            [
                {"account_id": a, "day": day, "shard": 0, "sends": n}
                for a, n in sorted(counts.items())
            ],
        )


def downgrade() -> None:
    op.drop_table("verification_days")
