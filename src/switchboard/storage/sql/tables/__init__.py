"""Every table, one module per area; importing this package registers them all on `metadata`."""

from __future__ import annotations

from switchboard.storage.sql.tables.base import UtcDateTime, metadata, timestamp_column
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
from switchboard.storage.sql.tables.fraud import fraud_blocks, fraud_counters, fraud_safe_list
from switchboard.storage.sql.tables.integrations import integration_keys

__all__ = [
    "UtcDateTime",
    "accounts",
    "billing_usage",
    "campaigns",
    "fraud_blocks",
    "fraud_counters",
    "fraud_safe_list",
    "inbound_messages",
    "integration_keys",
    "ledger_entries",
    "message_events",
    "message_parts",
    "messages",
    "metadata",
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
