"""Daily rollups the dashboard reads instead of counting the messages table."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.storage.sql.tables.base import metadata

message_stats_daily = sa.Table(
    "message_stats_daily",
    metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),  # ISO date, UTC
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("country_code", sa.String(4), primary_key=True),
    # sent (handed to a carrier), delivered, failed; otp_sent and otp_verified for conversions
    sa.Column("outcome", sa.String(16), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)
