"""clevertap_messages: one record per (account, mid); accounts: email_key (lower(email)); console flash

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-09 10:00:00
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("clevertap_messages") as table:
        table.add_column(sa.Column("mid_digest", sa.String(length=64), nullable=True))
        table.add_column(sa.Column("message_id", sa.String(length=36), nullable=True))
    _fill_digests()
    op.create_index(
        "uq_clevertap_messages_mid", "clevertap_messages", ["account_id", "mid_digest"], unique=True
    )
    # The login's key: lower(email) kept in a column, not an expression index. Under row-level
    # security (0016) a qual calling lower(), which is not leakproof, may not use an index.
    with op.batch_alter_table("accounts") as table:
        table.add_column(
            sa.Column("email_key", sa.String(length=320), nullable=False, server_default="")
        )
    op.execute("UPDATE accounts SET email_key = lower(email)")
    op.create_index("ix_accounts_email_key", "accounts", ["email_key"])
    with op.batch_alter_table("console_sessions") as table:
        table.add_column(sa.Column("flash", sa.Text(), nullable=True))


def _fill_digests() -> None:
    """The digest of each (account, mid)'s oldest record; the later copies (the resends this
    revision stops) keep NULL, which the unique index allows. Their message ids stay unknown:
    a resend of an older mid answers the first message's ids only for rows written from now."""
    connection = op.get_bind()
    rows = sa.table(
        "clevertap_messages",
        sa.column("ref"), sa.column("account_id"), sa.column("mid"),
        sa.column("created_at"), sa.column("mid_digest"),
    )  # fmt: skip
    seen: set[tuple[str, str]] = set()
    chosen: list[dict[str, str]] = []
    for row in connection.execute(
        sa.select(rows.c.ref, rows.c.account_id, rows.c.mid).order_by(rows.c.created_at, rows.c.ref)
    ):
        digest = hashlib.sha256(row.mid.encode()).hexdigest()
        if (row.account_id, digest) not in seen:
            seen.add((row.account_id, digest))
            chosen.append({"b_ref": row.ref, "b_digest": digest})
    update = (
        rows.update()
        .where(rows.c.ref == sa.bindparam("b_ref"))
        .values(mid_digest=sa.bindparam("b_digest"))
    )
    for start in range(0, len(chosen), _BATCH):
        connection.execute(update, chosen[start : start + _BATCH])


def downgrade() -> None:
    with op.batch_alter_table("console_sessions") as table:
        table.drop_column("flash")
    op.drop_index("ix_accounts_email_key", table_name="accounts")
    with op.batch_alter_table("accounts") as table:
        table.drop_column("email_key")
    op.drop_index("uq_clevertap_messages_mid", table_name="clevertap_messages")
    with op.batch_alter_table("clevertap_messages") as table:
        table.drop_column("message_id")
        table.drop_column("mid_digest")
