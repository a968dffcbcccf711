"""Integration keys: the credentials a customer gives a third party (a CRM) instead of its password."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.storage.sql.tables.base import metadata
from switchboard.storage.sql.tables.base import timestamp_column as _ts

integration_keys = sa.Table(
    "integration_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column(
        "account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
    sa.Column("name", sa.String(100), nullable=False),
    # HMAC-SHA256 of the whole key under the server pepper; the key itself is never stored
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("hint", sa.String(16), nullable=False),  # the key's last characters, for lists
    _ts("created_at", nullable=False),
    _ts("last_used_at"),
    _ts("revoked_at"),
)
