"""Silent authentication: one session per SAUTH verification, found by its state's keyed hash."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.storage.sql.tables.base import metadata
from switchboard.storage.sql.tables.base import timestamp_column as _ts

silent_auth_sessions = sa.Table(
    "silent_auth_sessions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("verification_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("operator", sa.String(40), nullable=False),
    sa.Column("destination", sa.String(20), nullable=False),  # E.164
    sa.Column("channel", sa.String(16), nullable=False),  # the OTP's, on fallback
    # HMAC-SHA256 of the OIDC `state` under the server pepper; the state itself is never stored
    sa.Column("state_hash", sa.String(64), nullable=False, unique=True),
    # the PKCE code_verifier (RFC 7636), sealed with the vault under the session id
    sa.Column("code_verifier", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # PENDING, VERIFIED, FALLBACK
    sa.Column("outcome", sa.String(200)),  # why it fell back, for the timeline
    _ts("created_at", nullable=False),
    _ts("expires_at", nullable=False),
    _ts("used_at"),  # the state was presented (single use)
    _ts("ended_at"),
)
