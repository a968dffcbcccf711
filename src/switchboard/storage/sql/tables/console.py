"""The web console's own state: operator accounts and login sessions."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.storage.sql.tables.base import metadata
from switchboard.storage.sql.tables.base import timestamp_column as _ts

operators = sa.Table(
    "operators",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("token_version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    _ts("created_at", nullable=False),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    # HMAC-SHA256 of the cookie's value under the server pepper; the value itself is never stored
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # customer | operator
    sa.Column("subject_id", sa.String(64), nullable=False),
    # the account's (or operator's) token_version at login: a password change bumps it
    sa.Column("token_version", sa.Integer, nullable=False),
    _ts("created_at", nullable=False),
    _ts("expires_at", nullable=False),
    _ts("revoked_at"),
    # a POST's one-time result (a new secret) for the page it redirects to, sealed with the
    # vault; cleared when that page shows it
    sa.Column("flash", sa.Text, nullable=True),
    sa.Index("ix_console_sessions_subject", "kind", "subject_id"),
)
