"""Automations: the rules per account, the events they saw (for dedupe), and their durable jobs."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.storage.sql.tables.base import metadata
from switchboard.storage.sql.tables.base import timestamp_column as _ts

automations = sa.Table(
    "automations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("event_name", sa.String(100), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("source", sa.String(255)),  # NULL: events from any source
    sa.Column("template", sa.Text, nullable=False),
    sa.Column("sender_id", sa.String(15)),
    sa.Column("message_type", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("delay_s", sa.Integer, nullable=False),
    sa.Column("quiet_hours", sa.String(11)),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

automation_events = sa.Table(
    "automation_events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("source", sa.String(255), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("subject", sa.String(200)),
    sa.Column("phone", sa.String(20)),
    sa.Column("email", sa.String(320)),
    _ts("occurred_at", nullable=False),
    _ts("recorded_at", nullable=False),
    # a retried webhook: the second insert finds the first and publishes nothing
    sa.UniqueConstraint("account_id", "source", "key"),
    sa.Index("ix_automation_events_subject", "account_id", "subject"),
    sa.Index("ix_automation_events_recorded", "recorded_at"),
)

automation_jobs = sa.Table(
    "automation_jobs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
    # no foreign keys to the rule or the event: a job outlives a deleted rule (its history)
    # and an erased event (GDPR)
    sa.Column("automation_id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("event_name", sa.String(100), nullable=False),
    sa.Column("subject", sa.String(200)),
    sa.Column("phone", sa.String(20)),
    sa.Column("email", sa.String(320)),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("context", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    _ts("due_at", nullable=False),
    sa.Column("reason", sa.String(255)),
    sa.Column("message_id", sa.String(36), unique=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("lease_owner", sa.String(64)),
    _ts("lease_until"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    _ts("done_at"),
    # one job per rule per event, however often the event is published
    sa.UniqueConstraint("event_id", "automation_id"),
    sa.Index("ix_automation_jobs_claim", "status", "due_at"),
    sa.Index("ix_automation_jobs_subject", "account_id", "subject"),
)
