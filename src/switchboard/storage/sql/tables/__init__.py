"""Every table, one module per area; importing this package registers them all on `metadata`."""

from __future__ import annotations

from switchboard.storage.sql.tables.automations import (
    automation_events,
    automation_jobs,
    automations,
)
from switchboard.storage.sql.tables.base import UtcDateTime, metadata, timestamp_column
from switchboard.storage.sql.tables.clevertap import (
    clevertap_messages,
    clevertap_reply_numbers,
    clevertap_settings,
)
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
from switchboard.storage.sql.tables.fraud import fraud_blocks, fraud_counters, fraud_safe_list
from switchboard.storage.sql.tables.idempotency import idempotency_keys
from switchboard.storage.sql.tables.integrations import integration_keys
from switchboard.storage.sql.tables.pipedrive import (
    pipedrive_campaigns,
    pipedrive_companies,
    pipedrive_notes,
    pipedrive_recipients,
)
from switchboard.storage.sql.tables.presence import worker_presence
from switchboard.storage.sql.tables.shopify import (
    shopify_data_exports,
    shopify_oauth_states,
    shopify_recipients,
    shopify_shops,
    shopify_webhooks,
)
from switchboard.storage.sql.tables.silent_auth import silent_auth_sessions
from switchboard.storage.sql.tables.statistics import message_stats_daily

__all__ = [
    "UtcDateTime",
    "accounts",
    "automation_events",
    "automation_jobs",
    "automations",
    "billing_usage",
    "campaigns",
    "clevertap_messages",
    "clevertap_reply_numbers",
    "clevertap_settings",
    "console_sessions",
    "fraud_blocks",
    "fraud_counters",
    "fraud_safe_list",
    "idempotency_keys",
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
    "pipedrive_campaigns",
    "pipedrive_companies",
    "pipedrive_notes",
    "pipedrive_recipients",
    "price_rules",
    "sandbox_outbox",
    "shopify_data_exports",
    "shopify_oauth_states",
    "shopify_recipients",
    "shopify_shops",
    "shopify_webhooks",
    "silent_auth_sessions",
    "timestamp_column",
    "verification_checks",
    "verification_days",
    "verifications",
    "wallets",
    "webhook_deliveries",
    "worker_presence",
]
