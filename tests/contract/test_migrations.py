"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from switchboard.storage.sql import migrate
from switchboard.storage.sql.engines import sync_engine
from switchboard.storage.sql.tables import accounts, metadata


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


def test_the_clevertap_mid_digest_is_filled_for_the_first_record_of_each_mid(
    database_url: str,
) -> None:
    """0017 makes (account, mid) unique: the rows already there get the digest of their mid,
    but only the oldest of each (account, mid) — its copies, resends sent before, keep NULL."""
    config = migrate.alembic_config(database_url)
    before = ScriptDirectory.from_config(config).get_revision("0017").down_revision
    assert isinstance(before, str)
    migrate.upgrade(database_url, before)
    command.downgrade(config, before)
    sqlite = database_url.startswith("sqlite")
    now = datetime.now(UTC)

    def at(moment: datetime) -> datetime:
        return moment.replace(tzinfo=None) if sqlite else moment

    engine = sync_engine(database_url)
    try:
        with engine.begin() as connection:
            for account in ("acme", "zeta"):
                connection.execute(
                    sa.text(
                        "INSERT INTO accounts (id, email, name, password_hash, enabled,"
                        " token_version, failed_logins, consecutive_failures, settings,"
                        " created_at, updated_at) VALUES (:id, :email, 'A', 'x', true, 1, 0, 0,"
                        " '{}', :t, :t)"
                    ),
                    {"id": account, "email": f"{account}@example.com", "t": at(now)},
                )
            for ref, account, mid, seconds in [
                ("r1", "acme", "m-1", 0), ("r2", "acme", "m-1", 5), ("r3", "acme", "m-2", 1),
                ("r4", "zeta", "m-1", 9),
            ]:  # fmt: skip
                connection.execute(
                    sa.text(
                        "INSERT INTO clevertap_messages (ref, account_id, mid, destination,"
                        " created_at) VALUES (:ref, :account, :mid, '919876543210', :t)"
                    ),
                    {"ref": ref, "account": account, "mid": mid,
                     "t": at(now + timedelta(seconds=seconds))},
                )  # fmt: skip
    finally:
        migrate.upgrade(database_url)
    try:
        with engine.connect() as connection:
            digests: dict[str, str | None] = dict(
                connection.execute(sa.text("SELECT ref, mid_digest FROM clevertap_messages")).all()
            )
    finally:
        engine.dispose()
    sha = {mid: hashlib.sha256(mid.encode()).hexdigest() for mid in ("m-1", "m-2")}
    assert digests == {"r1": sha["m-1"], "r2": None, "r3": sha["m-2"], "r4": sha["m-1"]}


def test_the_login_lookup_by_email_uses_an_index(database_url: str) -> None:
    """The console login finds the account by lower(email): an index, not a scan of accounts,
    also under row-level security (where a qual calling lower() could not use an index)."""
    migrate.upgrade(database_url)
    lookup = (
        sa.select(accounts.c.id)
        .where(accounts.c.email_key == "dev@example.com")
        .order_by(accounts.c.created_at)
        .limit(1)
    )
    engine = sync_engine(database_url)
    try:
        with engine.begin() as connection:
            compiled = str(
                lookup.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
            )
            if connection.dialect.name == "sqlite":
                plan = connection.execute(sa.text("EXPLAIN QUERY PLAN " + compiled)).all()
            else:  # an empty table: the planner would scan it, unless scans cost too much
                connection.execute(sa.text("SET LOCAL enable_seqscan = off"))
                plan = connection.execute(sa.text("EXPLAIN " + compiled)).all()
    finally:
        engine.dispose()
    assert "ix_accounts_email_key" in " ".join(str(part) for row in plan for part in row)


def test_verification_counters_join_their_sends_rows_and_part_again_on_downgrade(
    database_url: str,
) -> None:
    """0018 keeps a counter's verifications in its sends' row: 'pv:<range>' joins 'p:<range>'
    (a row at zero sends when the range has none); a downgrade splits them again."""
    config = migrate.alembic_config(database_url)
    migrate.upgrade(database_url, "0017")
    command.downgrade(config, "0017")
    before = {
        ("a", 100, 5), ("av", 100, 3), ("p:+9198765", 100, 2), ("pv:+9198765", 100, 1),
        ("cv:91", 101, 4), ("ip:198.51.100.7", 100, 1),
    }  # fmt: skip
    engine = sync_engine(database_url)

    def rows(columns: str) -> set[tuple[object, ...]]:
        with engine.connect() as connection:
            found = connection.execute(
                sa.text(f"SELECT name, minute, {columns} FROM fraud_counters")  # noqa: S608
            )
            return {tuple(row) for row in found}

    try:
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM fraud_counters"))
            for name, minute, count in before:
                connection.execute(
                    sa.text(
                        "INSERT INTO fraud_counters (account_id, name, minute, count)"
                        " VALUES ('acme', :name, :minute, :count)"
                    ),
                    {"name": name, "minute": minute, "count": count},
                )
        migrate.upgrade(database_url, "0018")
        assert rows("count, verified") == {
            ("a", 100, 5, 3), ("p:+9198765", 100, 2, 1), ("c:91", 101, 0, 4),
            ("ip:198.51.100.7", 100, 1, 0),
        }  # fmt: skip
        command.downgrade(config, "0017")
        assert rows("count") == before
    finally:
        migrate.upgrade(database_url)
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM fraud_counters"))
        engine.dispose()
