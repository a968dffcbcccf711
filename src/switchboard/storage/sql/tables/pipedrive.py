"""The Pipedrive app: installed companies (sealed OAuth tokens), their campaigns, notes to log."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.storage.sql.tables.base import metadata
from switchboard.storage.sql.tables.base import timestamp_column as _ts

pipedrive_companies = sa.Table(
    "pipedrive_companies",
    metadata,
    sa.Column("company_id", sa.String(32), primary_key=True),
    sa.Column("api_domain", sa.String(255), nullable=False),
    sa.Column("installed_by", sa.String(32), nullable=False),
    # vault-sealed, the context binding company and token kind
    sa.Column("access_token", sa.Text, nullable=False),
    sa.Column("refresh_token", sa.Text, nullable=False),
    _ts("access_expires_at", nullable=False),
    sa.Column("scope", sa.String(500), nullable=False, server_default=""),
    # bumped by every token change: the compare-and-swap of a refresh
    sa.Column("token_version", sa.Integer, nullable=False, server_default="0"),
    # the refresh lease: one process calls the token endpoint, the others wait for its result
    _ts("refresh_claimed_until"),
    # the settings page: which Switchboard customer sends, and its defaults
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=True),
    sa.Column("sender_id", sa.String(15), nullable=True),
    sa.Column("message_type", sa.String(16), nullable=True),
    sa.Column("default_country_code", sa.String(4), nullable=True),
    _ts("installed_at", nullable=False),
    _ts("updated_at", nullable=False),
)

pipedrive_campaigns = sa.Table(
    "pipedrive_campaigns",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("company_id", sa.String(32), nullable=False, index=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    # the MessageNow campaign; NULL while the send is in progress
    sa.Column("campaign_id", sa.String(36), nullable=True),
    sa.Column("user_id", sa.String(32), nullable=False),
    # the send form's one-time id: a form posted twice sends once
    sa.Column("form_nonce", sa.String(64), nullable=False, unique=True),
    sa.Column("template", sa.Text, nullable=False),
    sa.Column("recipients", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
    _ts("created_at", nullable=False),
)

pipedrive_recipients = sa.Table(
    "pipedrive_recipients",
    metadata,
    sa.Column("campaign_id", sa.String(36), sa.ForeignKey("pipedrive_campaigns.id"),
              primary_key=True),
    sa.Column("person_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("phone", sa.String(20), nullable=True),  # E.164; NULL when not sendable
    sa.Column("problem", sa.String(255), nullable=True),
)  # fmt: skip

pipedrive_notes = sa.Table(
    "pipedrive_notes",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("company_id", sa.String(32), nullable=False),
    sa.Column("person_id", sa.String(32), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    _ts("due_at", nullable=False, index=True),
    _ts("done_at"),
    sa.Column("last_error", sa.String(500), nullable=True),
    _ts("created_at", nullable=False),
)
