"""Idempotency keys: the first answer to each (account, route, key), kept 24 h for replays."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.storage.sql.tables.base import metadata
from switchboard.storage.sql.tables.base import timestamp_column as _ts

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("route", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),  # SHA-256 of the request
    sa.Column("owner", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("status_code", sa.SmallInteger, nullable=True),
    sa.Column("content_type", sa.String(100), nullable=True),
    sa.Column("body", sa.LargeBinary, nullable=True),
    _ts("created_at", nullable=False),
    _ts("lease_until", nullable=False),
    _ts("expires_at", nullable=False, index=True),
)
