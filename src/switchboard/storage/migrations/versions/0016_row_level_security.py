"""row-level security on the customer tables: the second wall behind each query's account filter

A connection sees and writes the rows of the account named in `switchboard.account_id`, or every
row when it is '*' (the server's own connections start so; a customer's request narrows its
transactions, see `switchboard.tenancy`); any other connection sees nothing. FORCE makes the
tables' owner obey too, so a server that migrates its own schema is not exempt; superusers and
roles with BYPASSRLS always are, so run the server as an ordinary role. The setting is read once
per statement (the sub-select becomes an InitPlan), not once per row. PostgreSQL only: SQLite
has no row-level security.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 20:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_SCOPE = "(SELECT current_setting('switchboard.account_id', true))"

# table -> the column naming the account its rows belong to
TABLES: dict[str, str] = {
    "accounts": "id",
    "automation_events": "account_id",
    "automation_jobs": "account_id",
    "automations": "account_id",
    "billing_usage": "account_id",
    "campaigns": "account_id",
    "clevertap_messages": "account_id",
    "clevertap_reply_numbers": "account_id",
    "clevertap_settings": "account_id",
    "fraud_blocks": "account_id",
    "fraud_counters": "account_id",
    "fraud_safe_list": "account_id",
    "idempotency_keys": "account_id",
    "integration_keys": "account_id",
    "ledger_entries": "account_id",
    "message_events": "account_id",
    "message_parts": "account_id",
    "message_stats_daily": "account_id",
    "messages": "account_id",
    "pipedrive_campaigns": "account_id",
    "pipedrive_companies": "account_id",
    "price_rules": "account_id",
    "sandbox_outbox": "account_id",
    "shopify_data_exports": "account_id",
    "shopify_oauth_states": "account_id",
    "shopify_shops": "account_id",
    "silent_auth_sessions": "account_id",
    "verification_checks": "account_id",
    "verification_days": "account_id",
    "verifications": "account_id",
    "wallets": "account_id",
    "webhook_deliveries": "account_id",
}


def _rule(table: str, column: str) -> str:
    rule = f"{_SCOPE} = '*' OR {column} = {_SCOPE}"
    if table == "price_rules":  # '' holds the platform's default prices, which every account reads
        rule += f" OR {column} = ''"
    return rule


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in TABLES.items():
        rule = _rule(table, column)
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY account_scope ON {table} USING ({rule}) WITH CHECK ({rule})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP POLICY IF EXISTS account_scope ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
