"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import switchboard.storage.sql.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), server_default="", nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("(true)"), nullable=False),
        sa.Column("token_version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "first_failure_at",
            switchboard.storage.sql.tables.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "locked_until", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("settings", sa.JSON(), server_default="{}", nullable=False),
        sa.Column("callback_url", sa.String(length=2048), nullable=True),
        sa.Column("callback_secret", sa.String(length=200), nullable=True),
        sa.Column("callback_previous_secret", sa.String(length=200), nullable=True),
        sa.Column(
            "callback_rotated_at",
            switchboard.storage.sql.tables.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "created_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=320), nullable=False),
        sa.Column("destination", sa.String(length=320), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "received_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
    )
    op.create_table(
        "message_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=400), nullable=True),
        sa.Column("at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_events")),
    )
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_events_message_id"), ["message_id"], unique=False
        )

    op.create_table(
        "parked_receipts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column(
            "done_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "received_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parked_receipts")),
    )
    with op.batch_alter_table("parked_receipts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_parked_receipts_provider", ["connector", "provider_id"], unique=False
        )

    op.create_table(
        "sandbox_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("destination", sa.String(length=320), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "sent_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_outbox")),
    )
    with op.batch_alter_table("sandbox_outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sandbox_outbox_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "verification_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("verification_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=False),
        sa.Column(
            "checked_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_checks")),
    )
    with op.batch_alter_table("verification_checks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_verification_checks_verification_id"), ["verification_id"], unique=False
        )

    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("message_type", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("invalid", sa.Integer(), server_default="0", nullable=False),
        sa.Column("errors", sa.JSON(), server_default="[]", nullable=False),
        sa.Column(
            "scheduled_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "created_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_campaigns_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaigns_account_time", ["account_id", "created_at"], unique=False
        )

    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("numeric_id", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("campaign_id", sa.String(length=36), nullable=True),
        sa.Column("verification_id", sa.BigInteger(), nullable=True),
        sa.Column("step", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("message_type", sa.String(length=16), nullable=False),
        sa.Column("lane", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("country_code", sa.String(length=4), server_default="", nullable=False),
        sa.Column("destination", sa.String(length=320), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("otp_code", sa.String(length=8), nullable=True),
        sa.Column("subject", sa.String(length=400), nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("encoding", sa.String(length=8), nullable=True),
        sa.Column("segments", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("dlt_entity_id", sa.String(length=32), nullable=True),
        sa.Column("dlt_template_id", sa.String(length=32), nullable=True),
        sa.Column("client_ref", sa.String(length=255), nullable=True),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_reason", sa.String(length=400), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column(
            "not_before", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "lease_until", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "dispatched_at",
            switchboard.storage.sql.tables.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "expires_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "created_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "submitted_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "done_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "updated_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_messages_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("numeric_id", name=op.f("uq_messages_numeric_id")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_account_time", ["account_id", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_messages_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index("ix_messages_claim", ["status", "lane", "not_before"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_messages_verification_id"), ["verification_id"], unique=False
        )

    op.create_table(
        "verifications",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("country_code", sa.String(length=4), nullable=False),
        sa.Column("mobile_number", sa.String(length=20), nullable=False),
        sa.Column("destination", sa.String(length=320), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("code_length", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.SmallInteger(), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("fallback", sa.JSON(), server_default="[]", nullable=False),
        sa.Column("is_test", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column(
            "created_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "ended_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_verifications_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verifications")),
    )
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_verifications_account_time", ["account_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_verifications_number_time",
            ["account_id", "destination", "created_at"],
            unique=False,
        )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=48), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("last_status_code", sa.SmallInteger(), nullable=True),
        sa.Column("last_error", sa.String(length=400), nullable=True),
        sa.Column("last_latency_ms", sa.Integer(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column(
            "next_attempt_at",
            switchboard.storage.sql.tables.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "lease_until", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "created_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "delivered_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_webhook_deliveries_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_account_time", ["account_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_webhook_deliveries_claim", ["status", "next_attempt_at"], unique=False
        )

    op.create_table(
        "message_parts",
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("part_no", sa.SmallInteger(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column(
            "done_at", switchboard.storage.sql.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_message_parts_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("message_id", "part_no", name=op.f("pk_message_parts")),
    )
    with op.batch_alter_table("message_parts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_message_parts_provider", ["connector", "provider_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("message_parts", schema=None) as batch_op:
        batch_op.drop_index("ix_message_parts_provider")

    op.drop_table("message_parts")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_claim")
        batch_op.drop_index("ix_webhook_deliveries_account_time")

    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index("ix_verifications_number_time")
        batch_op.drop_index("ix_verifications_account_time")

    op.drop_table("verifications")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_verification_id"))
        batch_op.drop_index("ix_messages_claim")
        batch_op.drop_index(batch_op.f("ix_messages_campaign_id"))
        batch_op.drop_index("ix_messages_account_time")

    op.drop_table("messages")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index("ix_campaigns_account_time")

    op.drop_table("campaigns")
    with op.batch_alter_table("verification_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verification_checks_verification_id"))

    op.drop_table("verification_checks")
    with op.batch_alter_table("sandbox_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_outbox_account_id"))

    op.drop_table("sandbox_outbox")
    with op.batch_alter_table("parked_receipts", schema=None) as batch_op:
        batch_op.drop_index("ix_parked_receipts_provider")

    op.drop_table("parked_receipts")
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_events_message_id"))

    op.drop_table("message_events")
    op.drop_table("inbound_messages")
    op.drop_table("accounts")
