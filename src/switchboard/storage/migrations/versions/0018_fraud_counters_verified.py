"""fraud_counters: a range's (country's, account's) verifications in its sends' row

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# The verification counters before this revision: 'av', 'pv:<range>', 'cv:<country>'.


def upgrade() -> None:
    with op.batch_alter_table("fraud_counters") as table:
        table.add_column(
            sa.Column("verified", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    # Each verification row joins its sends' row ('pv:+91987650' → 'p:+91987650'), created at
    # zero sends when there is none.
    op.execute(
        "INSERT INTO fraud_counters (account_id, name, minute, count, verified) "
        "SELECT account_id, CASE WHEN name = 'av' THEN 'a' "
        "ELSE substr(name, 1, 1) || substr(name, 3) END, minute, 0, count "
        "FROM fraud_counters WHERE name = 'av' OR name LIKE 'pv:%' OR name LIKE 'cv:%' "
        "ON CONFLICT (account_id, name, minute) "
        "DO UPDATE SET verified = fraud_counters.verified + excluded.verified"
    )
    op.execute(
        "DELETE FROM fraud_counters WHERE name = 'av' OR name LIKE 'pv:%' OR name LIKE 'cv:%'"
    )


def downgrade() -> None:
    op.execute(
        "INSERT INTO fraud_counters (account_id, name, minute, count, verified) "
        "SELECT account_id, CASE WHEN name = 'a' THEN 'av' "
        "ELSE substr(name, 1, 1) || 'v' || substr(name, 2) END, minute, verified, 0 "
        "FROM fraud_counters WHERE verified <> 0 AND (name = 'a' OR name LIKE 'p:%' "
        "OR name LIKE 'c:%')"
    )
    op.execute("DELETE FROM fraud_counters WHERE count = 0")  # rows only verifications made
    with op.batch_alter_table("fraud_counters") as table:
        table.drop_column("verified")
