"""CleverTap (issue #13): the `mid` kept with each message it sent, and each customer's settings."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.storage.sql.tables.base import metadata
from switchboard.storage.sql.tables.base import timestamp_column as _ts

# One row per message CleverTap asked for. `ref` is what the message's client_ref carries
# ("clevertap:" + ref): the status listener recognises CleverTap traffic from the message row
# itself, with no query for anyone else's messages, and the row exists before its message does.
clevertap_messages = sa.Table(
    "clevertap_messages",
    metadata,
    sa.Column("ref", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("mid", sa.Text, nullable=False),  # $$MessageID, verbatim: echoed back as `meta`
    # SHA-256 (hex) of `mid`: a mid runs to 4,096 characters, too long for a portable index.
    # Unique per account, so a resend of one mid finds the first record (NULL only on rows
    # that were duplicates already when 0017 added the column).
    sa.Column("mid_digest", sa.String(64), nullable=True),
    # the message queued for the record; NULL while it is being queued
    sa.Column("message_id", sa.String(36), nullable=True),
    sa.Column("clevertap_account", sa.String(100), nullable=True),  # the `account` header
    sa.Column("destination", sa.String(20), nullable=False),  # digits: whom a reply comes from
    _ts("created_at", nullable=False),
    # a reply's `meta`: the newest CleverTap message of the customer to the replying number
    sa.Index("ix_clevertap_messages_reply", "account_id", "destination", "created_at"),
    sa.Index("uq_clevertap_messages_mid", "account_id", "mid_digest", unique=True),
)

clevertap_settings = sa.Table(
    "clevertap_settings",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("callback_url", sa.String(2048), nullable=True),  # CleverTap's per-provider URL
    sa.Column("default_country_code", sa.String(4), nullable=True),  # for national $$To
    _ts("updated_at", nullable=False),
)

# The customer's own numbers (digits, no '+') whose inbound messages go to CleverTap as
# `replied` events; a number belongs to one customer.
clevertap_reply_numbers = sa.Table(
    "clevertap_reply_numbers",
    metadata,
    sa.Column("number", sa.String(20), primary_key=True),
    sa.Column(
        "account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
)
