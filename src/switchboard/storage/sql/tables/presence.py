"""Which delivery workers are alive: limits meant for the whole cluster are divided among them."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.storage.sql.tables.base import metadata
from switchboard.storage.sql.tables.base import timestamp_column as _ts

worker_presence = sa.Table(
    "worker_presence",
    metadata,
    sa.Column("owner", sa.String(100), primary_key=True),
    _ts("seen_at", nullable=False),
)
