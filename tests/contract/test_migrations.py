"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from switchboard.storage.sql import migrate
from switchboard.storage.sql.engines import sync_url
from switchboard.storage.sql.tables import metadata


def test_migrations_match_the_table_definitions(database_url: str) -> None:
    migrate.upgrade(database_url)
    assert migrate.is_current(database_url)
    engine = sa.create_engine(sync_url(database_url))
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
