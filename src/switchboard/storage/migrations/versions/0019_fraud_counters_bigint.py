"""fraud_counters.count: a 64-bit integer (an account's write count only ever grows)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# The write count ('w', one row per account, never pruned) gains one per process sync that
# wrote for the account: ten processes syncing each second pass 2**31 in under seven years,
# and PostgreSQL's integer would then refuse every sync (the guard would fail closed).
# PostgreSQL rewrites the table under an exclusive lock: small, as every other row is pruned.


def upgrade() -> None:
    with op.batch_alter_table("fraud_counters") as table:
        table.alter_column("count", type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("fraud_counters") as table:
        table.alter_column("count", type_=sa.Integer(), existing_nullable=False)
