"""Every table, one module per area; importing this package registers them all on `metadata`."""

from __future__ import annotations

from switchboard.storage.sql.tables.base import UtcDateTime, metadata, timestamp_column
from switchboard.storage.sql.tables.console import console_sessions, operators
from switchboard.storage.sql.tables.core import (
    accounts,
    billing_usage,
    campaigns,
    inbound_messages,
    ledger_entries,
    message_events,
    message_parts,
    messages,
    parked_receipts,
    price_rules,
    sandbox_outbox,
    verification_checks,
    verification_days,
    verifications,
    wallets,
    webhook_deliveries,
)
from switchboard.storage.sql.tables.integrations import integration_keys
from switchboard.storage.sql.tables.statistics import message_stats_daily

__all__ = [
    "UtcDateTime",
    "accounts",
    "billing_usage",
    "campaigns",
    "console_sessions",
    "inbound_messages",
    "integration_keys",
    "ledger_entries",
    "message_events",
    "message_parts",
    "message_stats_daily",
    "messages",
    "metadata",
    "operators",
    "parked_receipts",
    "price_rules",
    "sandbox_outbox",
    "timestamp_column",
    "verification_checks",
    "verification_days",
    "verifications",
    "wallets",
    "webhook_deliveries",
]
