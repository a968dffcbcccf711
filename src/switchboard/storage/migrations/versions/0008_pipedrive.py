"""pipedrive: installed companies, their campaigns and the notes to log

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 17:09:27.757393
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import switchboard.storage.sql.tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipedrive_campaigns",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("company_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.String(length=36), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("form_nonce", sa.String(length=64), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("recipients", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipedrive_campaigns")),
        sa.UniqueConstraint("form_nonce", name=op.f("uq_pipedrive_campaigns_form_nonce")),
    )
    with op.batch_alter_table("pipedrive_campaigns", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pipedrive_campaigns_company_id"), ["company_id"], unique=False
        )

    op.create_table(
        "pipedrive_notes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("company_id", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=32), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "due_at", switchboard.storage.sql.tables.base.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "done_at", switchboard.storage.sql.tables.base.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column(
            "created_at",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipedrive_notes")),
    )
    with op.batch_alter_table("pipedrive_notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pipedrive_notes_due_at"), ["due_at"], unique=False)

    op.create_table(
        "pipedrive_companies",
        sa.Column("company_id", sa.String(length=32), nullable=False),
        sa.Column("api_domain", sa.String(length=255), nullable=False),
        sa.Column("installed_by", sa.String(length=32), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=False),
        sa.Column("refresh_token", sa.Text(), nullable=False),
        sa.Column(
            "access_expires_at",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column("scope", sa.String(length=500), server_default="", nullable=False),
        sa.Column("token_version", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "refresh_claimed_until",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("sender_id", sa.String(length=15), nullable=True),
        sa.Column("message_type", sa.String(length=16), nullable=True),
        sa.Column("default_country_code", sa.String(length=4), nullable=True),
        sa.Column(
            "installed_at",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            switchboard.storage.sql.tables.base.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_pipedrive_companies_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("company_id", name=op.f("pk_pipedrive_companies")),
    )
    op.create_table(
        "pipedrive_recipients",
        sa.Column("campaign_id", sa.String(length=36), nullable=False),
        sa.Column("person_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("problem", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["pipedrive_campaigns.id"],
            name=op.f("fk_pipedrive_recipients_campaign_id_pipedrive_campaigns"),
        ),
        sa.PrimaryKeyConstraint("campaign_id", "person_id", name=op.f("pk_pipedrive_recipients")),
    )


def downgrade() -> None:
    op.drop_table("pipedrive_recipients")
    op.drop_table("pipedrive_companies")
    with op.batch_alter_table("pipedrive_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipedrive_notes_due_at"))

    op.drop_table("pipedrive_notes")
    with op.batch_alter_table("pipedrive_campaigns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipedrive_campaigns_company_id"))

    op.drop_table("pipedrive_campaigns")
