"""The core tables: accounts, verifications, messages and their queue, callbacks, billing."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.storage.sql.tables.base import metadata
from switchboard.storage.sql.tables.base import timestamp_column as _ts

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    # lower(email), the login's lookup key (indexed; an expression index would not serve the
    # lookup under row-level security: lower() is not leakproof)
    sa.Column("email_key", sa.String(320), nullable=False, server_default="", index=True),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.text("true")),
    sa.Column("token_version", sa.Integer, nullable=False, server_default="1"),
    # brute-force lock of the token endpoint
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    _ts("first_failure_at"),
    _ts("locked_until"),
    # per-account overrides of the platform defaults (OTP length, limits, brand, countries …)
    sa.Column("settings", sa.JSON, nullable=False, server_default="{}"),
    sa.Column("callback_url", sa.String(2048), nullable=True),
    sa.Column("callback_secret", sa.String(200), nullable=True),
    sa.Column("callback_previous_secret", sa.String(200), nullable=True),
    _ts("callback_rotated_at"),
    _ts("callback_disabled_at"),  # set by a 410; setting the URL again re-enables
    sa.Column("callback_disabled_reason", sa.String(400), nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

verifications = sa.Table(
    "verifications",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("transaction_id", sa.String(36), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("country_code", sa.String(4), nullable=False),
    sa.Column("mobile_number", sa.String(20), nullable=False),
    sa.Column("destination", sa.String(320), nullable=False),  # E.164, or the e-mail address
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("code_length", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.SmallInteger, nullable=False),
    sa.Column("timeout_s", sa.Integer, nullable=False),
    sa.Column("fallback", sa.JSON, nullable=False, server_default="[]"),
    sa.Column("is_test", sa.Boolean, nullable=False, server_default=sa.text("false")),
    _ts("created_at", nullable=False),
    _ts("expires_at", nullable=False),
    _ts("ended_at"),
    sa.Index("ix_verifications_number_time", "account_id", "destination", "created_at"),
    sa.Index("ix_verifications_account_time", "account_id", "created_at"),
)

# Verifications started per account and UTC day: the daily quota's count, read and bumped per
# send instead of counting the day's verifications (which grew with the day's volume). Split in
# shards: on PostgreSQL a bumped row stays locked until its transaction's commit (a WAL flush),
# and one row per account would let only one send of the account commit at a time.
verification_days = sa.Table(
    "verification_days",
    metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),  # YYYY-MM-DD (UTC)
    sa.Column("shard", sa.SmallInteger, primary_key=True),
    sa.Column("sends", sa.BigInteger, nullable=False, server_default="0"),
)

verification_checks = sa.Table(
    "verification_checks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("verification_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("result", sa.String(32), nullable=False),
    _ts("checked_at", nullable=False),
)

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("message_type", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # LIST or FILE
    sa.Column("numeric_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("transaction_id", sa.String(36), nullable=False),
    sa.Column("sender", sa.String(64), nullable=True),
    sa.Column("template", sa.Text, nullable=False),
    sa.Column("total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("invalid", sa.Integer, nullable=False, server_default="0"),
    sa.Column("errors", sa.JSON, nullable=False, server_default="[]"),
    _ts("scheduled_at"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    sa.Index("ix_campaigns_account_time", "account_id", "created_at"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column(
        "numeric_id", sa.BigInteger, nullable=False, unique=True
    ),  # the spec's verificationId
    sa.Column("transaction_id", sa.String(36), nullable=False),
    sa.Column("campaign_id", sa.String(36), nullable=True, index=True),
    sa.Column("verification_id", sa.BigInteger, nullable=True, index=True),
    sa.Column("step", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("message_type", sa.String(16), nullable=False),
    sa.Column("lane", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("country_code", sa.String(4), nullable=False, server_default=""),
    sa.Column("destination", sa.String(320), nullable=False),
    sa.Column("sender", sa.String(64), nullable=True),
    sa.Column("body", sa.Text, nullable=False),  # OTP codes are redacted once sent
    sa.Column("otp_code", sa.String(8), nullable=True),  # cleared once sent
    sa.Column("subject", sa.String(400), nullable=True),
    sa.Column("html", sa.Text, nullable=True),
    sa.Column("encoding", sa.String(8), nullable=True),
    sa.Column("segments", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("dlt_entity_id", sa.String(32), nullable=True),
    sa.Column("dlt_template_id", sa.String(32), nullable=True),
    sa.Column("client_ref", sa.String(255), nullable=True),
    sa.Column("connector", sa.String(64), nullable=True),
    sa.Column("error_code", sa.String(32), nullable=True),
    sa.Column("error_reason", sa.String(400), nullable=True),
    sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    # billing (ADR 0008): what acceptance charged, in minor units, and HELD/SETTLED/REFUNDED
    sa.Column("charge", sa.BigInteger, nullable=True),
    sa.Column("charge_state", sa.String(8), nullable=True),
    _ts("not_before"),
    _ts("lease_until"),
    # set just before the driver is called: a lease that expires after it means "maybe sent"
    _ts("dispatched_at"),
    _ts("expires_at"),
    _ts("created_at", nullable=False),
    _ts("submitted_at"),
    _ts("done_at"),
    _ts("updated_at", nullable=False),
    # the claim path: status + lane + not_before, oldest first
    sa.Index("ix_messages_claim", "status", "lane", "not_before"),
    sa.Index("ix_messages_account_time", "account_id", "created_at"),
)

message_parts = sa.Table(
    "message_parts",
    metadata,
    sa.Column("message_id", sa.String(36), sa.ForeignKey("messages.id"), primary_key=True),
    sa.Column("part_no", sa.SmallInteger, primary_key=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("provider_id", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=True),
    sa.Column("error_code", sa.String(32), nullable=True),
    _ts("done_at"),
    sa.Index("ix_message_parts_provider", "connector", "provider_id"),
)

message_events = sa.Table(
    "message_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(36), nullable=False, index=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("connector", sa.String(64), nullable=True),
    sa.Column("detail", sa.String(400), nullable=True),
    _ts("at", nullable=False),
)

# receipts whose provider id is not (yet) known: they may beat their submit_sm_resp
parked_receipts = sa.Table(
    "parked_receipts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("provider_id", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("error_code", sa.String(32), nullable=True),
    _ts("done_at"),
    _ts("received_at", nullable=False),
    sa.Index("ix_parked_receipts_provider", "connector", "provider_id"),
)

inbound_messages = sa.Table(
    "inbound_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("source", sa.String(320), nullable=False),
    sa.Column("destination", sa.String(320), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    _ts("received_at", nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # the webhook-id, stable across retries
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("event_type", sa.String(48), nullable=False),
    sa.Column("message_id", sa.String(36), nullable=True),
    sa.Column("verification_id", sa.BigInteger, nullable=True),
    sa.Column("url", sa.String(2048), nullable=False),  # the URL of the last attempt
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # PENDING, DELIVERED, DEAD
    sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("last_status_code", sa.SmallInteger, nullable=True),
    sa.Column("last_error", sa.String(400), nullable=True),
    sa.Column("last_latency_ms", sa.Integer, nullable=True),
    # the last 5 attempts: [{attempt, at, statusCode, latencyMs, error}]
    sa.Column("recent_attempts", sa.JSON, nullable=False, server_default="[]"),
    sa.Column("replays", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    _ts("next_attempt_at"),
    _ts("lease_until"),
    _ts("created_at", nullable=False),
    _ts("delivered_at"),
    _ts("dead_at"),
    _ts("replayed_at"),
    sa.Index("ix_webhook_deliveries_claim", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_account_time", "account_id", "created_at"),
    sa.Index("ix_webhook_deliveries_verification", "verification_id"),
)

sandbox_outbox = sa.Table(
    "sandbox_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(64), nullable=False, index=True),
    sa.Column("message_id", sa.String(36), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("destination", sa.String(320), nullable=False),
    sa.Column("sender", sa.String(64), nullable=True),
    sa.Column("text", sa.Text, nullable=False),
    _ts("sent_at", nullable=False),
)

# -- billing (ADR 0008): amounts are integers of 10^-billing.minor_units of the currency ----------

price_rules = sa.Table(
    "price_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(64), nullable=False),  # '' for the platform's defaults
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),  # '' matches any destination
    sa.Column("message_type", sa.String(16), nullable=False),  # '*' matches any type
    sa.Column("min_volume", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("price", sa.BigInteger, nullable=False),  # per SMS segment or per message
    _ts("updated_at", nullable=False),
    sa.UniqueConstraint("account_id", "channel", "prefix", "message_type", "min_volume"),
)

wallets = sa.Table(
    "wallets",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("credit_limit", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("low_balance_threshold", sa.BigInteger, nullable=True),
    sa.Column("low_balance_alerted", sa.Boolean, nullable=False, server_default=sa.text("false")),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

# Append-only: rows are inserted, never updated or deleted; the wallet's balance is their sum.
ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    # BIGINT on PostgreSQL; INTEGER on SQLite, the only type that autoincrements there
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("balance_after", sa.BigInteger, nullable=False),
    sa.Column("message_id", sa.String(36), nullable=True, index=True),
    sa.Column("campaign_id", sa.String(36), nullable=True),
    sa.Column("verification_id", sa.BigInteger, nullable=True),
    sa.Column("messages", sa.Integer, nullable=False, server_default="0"),
    sa.Column("units", sa.Integer, nullable=False, server_default="0"),
    sa.Column("reference", sa.String(200), nullable=True),
    _ts("created_at", nullable=False),
    sa.Index("ix_ledger_entries_account_time", "account_id", "created_at"),
)

# Units (SMS segments, other messages) charged per calendar month (UTC): the volume tiers' count.
billing_usage = sa.Table(
    "billing_usage",
    metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),  # YYYY-MM
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("units", sa.BigInteger, nullable=False, server_default="0"),
)
