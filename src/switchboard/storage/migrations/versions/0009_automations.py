"""automations: the rules per account, the events they saw (dedupe) and their durable jobs

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-02 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import switchboard.storage.sql.tables

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automation_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column(
            "occurred_at",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "recorded_at",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_automation_events_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_events")),
        sa.UniqueConstraint(
            "account_id", "source", "key", name=op.f("uq_automation_events_account_id_source_key")
        ),
    )
    with op.batch_alter_table("automation_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_automation_events_subject", ["account_id", "subject"], unique=False
        )
        batch_op.create_index("ix_automation_events_recorded", ["recorded_at"], unique=False)

    op.create_table(
        "automation_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("automation_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_name", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "due_at", switchboard.storage.sql.tables.base.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("message_id", sa.String(length=36), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column(
            "lease_until",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "created_at",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "done_at", switchboard.storage.sql.tables.base.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_automation_jobs_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_jobs")),
        sa.UniqueConstraint(
            "event_id", "automation_id", name=op.f("uq_automation_jobs_event_id_automation_id")
        ),
        sa.UniqueConstraint("message_id", name=op.f("uq_automation_jobs_message_id")),
    )
    with op.batch_alter_table("automation_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_automation_jobs_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index("ix_automation_jobs_claim", ["status", "due_at"], unique=False)
        batch_op.create_index("ix_automation_jobs_subject", ["account_id", "subject"], unique=False)

    op.create_table(
        "automations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("event_name", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("sender_id", sa.String(length=15), nullable=True),
        sa.Column("message_type", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("delay_s", sa.Integer(), nullable=False),
        sa.Column("quiet_hours", sa.String(length=11), nullable=True),
        sa.Column(
            "created_at",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_automations_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automations")),
    )
    with op.batch_alter_table("automations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_automations_account_id"), ["account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("automations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_automations_account_id"))

    op.drop_table("automations")
    with op.batch_alter_table("automation_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_automation_jobs_subject")
        batch_op.drop_index("ix_automation_jobs_claim")
        batch_op.drop_index(batch_op.f("ix_automation_jobs_account_id"))

    op.drop_table("automation_jobs")
    with op.batch_alter_table("automation_events", schema=None) as batch_op:
        batch_op.drop_index("ix_automation_events_recorded")
        batch_op.drop_index("ix_automation_events_subject")

    op.drop_table("automation_events")
