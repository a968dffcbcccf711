"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from switchboard.storage.sql import migrate
from switchboard.storage.sql.engines import sync_engine
from switchboard.storage.sql.tables import metadata


def test_migrations_match_the_table_definitions(database_url: str) -> None:
    migrate.upgrade(database_url)
    assert migrate.is_current(database_url)
    engine = sync_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_upgrading_twice_changes_nothing(sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    migrate.upgrade(sqlite_url)
    assert migrate.is_current(sqlite_url)


def test_the_daily_quota_counter_starts_from_todays_sends(database_url: str) -> None:
    """0005 replaces counting the day's verifications with a counter: an upgrade in the middle
    of a day carries today's sends over (test numbers never counted), and nothing older."""
    # PostgreSQL's test database is shared and already at head: step back to 0004 first.
    migrate.upgrade(database_url, "0004")
    command.downgrade(migrate.alembic_config(database_url), "0004")
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1, hours=1)
    sqlite = database_url.startswith("sqlite")

    def at(moment: datetime) -> datetime:
        return moment.replace(tzinfo=None) if sqlite else moment

    engine = sync_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO accounts (id, email, name, password_hash, enabled, token_version,"
                    " failed_logins, consecutive_failures, settings, created_at, updated_at)"
                    " VALUES ('acme', 'a@example.com', 'Acme', 'x', true, 1, 0, 0, '{}', :t, :t)"
                ),
                {"t": at(now)},
            )
            for number, (moment, is_test) in enumerate(
                [(now, False), (now, False), (now, True), (yesterday, False)]
            ):
                connection.execute(
                    sa.text(
                        "INSERT INTO verifications (id, account_id, transaction_id, channel,"
                        " country_code, mobile_number, destination, code_hash, code_length,"
                        " status, attempts, max_attempts, timeout_s, fallback, is_test,"
                        " created_at, expires_at) VALUES (:id, 'acme', 't', 'SMS', '91', :n,"
                        " :d, 'h', 4, 'PENDING', 0, 5, 60, '[]', :test, :t, :t)"
                    ),
                    {"id": number + 1, "n": str(number), "d": f"+91{number}", "test": is_test,
                     "t": at(moment)},
                )  # fmt: skip
    finally:
        migrate.upgrade(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT account_id, day, shard, sends FROM verification_days")
            ).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [("acme", now.strftime("%Y-%m-%d"), 0, 2)]
