"""The Shopify app: installed shops (sealed tokens), OAuth states, received webhooks, recipients, exports."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.storage.sql.tables.base import metadata
from switchboard.storage.sql.tables.base import timestamp_column as _ts

shopify_shops = sa.Table(
    "shopify_shops",
    metadata,
    sa.Column("shop", sa.String(255), primary_key=True),  # acme.myshopify.com
    sa.Column(
        "account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=True),  # IANA, from GraphQL at install
    sa.Column("scope", sa.String(1000), nullable=False, server_default=""),
    # vault-sealed (context shopify:<shop>:<column>); NULL once uninstalled
    sa.Column("access_token", sa.Text, nullable=True),
    sa.Column("refresh_token", sa.Text, nullable=True),
    _ts("access_expires_at"),
    _ts("refresh_expires_at"),
    # bumped by every stored token pair: a refresh is kept only if nobody stored one meanwhile
    sa.Column("token_version", sa.Integer, nullable=False, server_default="0"),
    _ts("refresh_lease_until"),  # one refresher at a time, across processes
    _ts("installed_at", nullable=False),
    _ts("uninstalled_at"),
    _ts("updated_at", nullable=False),
)

shopify_oauth_states = sa.Table(
    "shopify_oauth_states",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),  # SHA-256 of the state nonce
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("shop", sa.String(255), nullable=False),
    _ts("expires_at", nullable=False, index=True),
)

shopify_webhooks = sa.Table(
    "shopify_webhooks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("webhook_id", sa.String(255), nullable=False, unique=True),  # X-Shopify-Webhook-Id
    sa.Column("shop", sa.String(255), nullable=False, index=True),
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("api_version", sa.String(16), nullable=True),
    sa.Column("body", sa.Text, nullable=False),  # the raw JSON; emptied once processed (PII)
    sa.Column("status", sa.String(16), nullable=False),  # PENDING, DONE, FAILED
    sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(400), nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    _ts("lease_until"),
    _ts("next_attempt_at", nullable=False),
    _ts("triggered_at"),
    _ts("received_at", nullable=False),
    _ts("processed_at"),
    sa.Index("ix_shopify_webhooks_claim", "status", "next_attempt_at"),
)

# Who the shop's events were about: what customers/redact and shop/redact must erase.
shopify_recipients = sa.Table(
    "shopify_recipients",
    metadata,
    sa.Column("shop", sa.String(255), primary_key=True),
    sa.Column("destination", sa.String(320), primary_key=True),  # E.164 or e-mail address
    sa.Column("customer_id", sa.String(64), nullable=True, index=True),
    _ts("seen_at", nullable=False),
)

# customers/data_request answers: the JSON document the shop owner hands to the customer.
shopify_data_exports = sa.Table(
    "shopify_data_exports",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("shop", sa.String(255), nullable=False, index=True),
    sa.Column("account_id", sa.String(64), nullable=False, index=True),
    sa.Column("data_request_id", sa.String(64), nullable=True),
    sa.Column("customer_id", sa.String(64), nullable=True),
    sa.Column("document", sa.Text, nullable=False),
    _ts("created_at", nullable=False),
)
