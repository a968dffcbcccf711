"""The fraud guard's tables: its records (blocks and monitor-only hits), safe lists, counters."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.storage.sql.tables.base import metadata
from switchboard.storage.sql.tables.base import timestamp_column as _ts

fraud_blocks = sa.Table(
    "fraud_blocks",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # blocked | monitored
    sa.Column("subject", sa.String(64), nullable=False),  # the prefix, address or country
    sa.Column("destination", sa.String(32), nullable=False),
    sa.Column("country_code", sa.String(4), nullable=False),
    sa.Column("client_ip", sa.String(64), nullable=True),
    sa.Column("verification_id", sa.BigInteger, nullable=True, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("figures", sa.JSON, nullable=False, server_default="{}"),
    _ts("created_at", nullable=False),
    _ts("until", index=True),  # a hold refuses its subject until then
    sa.Column("hits", sa.Integer, nullable=False, server_default="1"),
    _ts("last_hit_at"),
    sa.Index("ix_fraud_blocks_account_time", "account_id", "created_at"),
)

fraud_safe_list = sa.Table(
    "fraud_safe_list",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("entry", sa.String(20), primary_key=True),  # +digits, or a +digits* prefix
    _ts("created_at", nullable=False),
)

# Sends and verifications per account, counter (p:+91987650 …) and minute since the epoch;
# upserted by each process's guard about once a second (fraud/guard.py). A counter's
# verifications (the guard's 'pv:+91987650') are kept in its sends' row.
fraud_counters = sa.Table(
    "fraud_counters",
    metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(80), primary_key=True),
    sa.Column("minute", sa.Integer, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),  # the write count only grows
    sa.Column("verified", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Index("ix_fraud_counters_minute", "minute"),
)
