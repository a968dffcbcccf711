"""Alembic environment: runs migrations on the connection or URL handed over by migrate.py."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from switchboard.storage.sql.engines import sync_engine
from switchboard.storage.sql.tables import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    # a migration that moves data must see every account's rows (row-level security, 0016)
    engine = sync_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
