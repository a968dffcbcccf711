"""SQL persistence of the sandbox carrier's outbox, bounded to the newest entries."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from switchboard.channels.sandbox import OutboxEntry
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import sandbox_outbox

o = sandbox_outbox.c


class SqlOutbox:
    def __init__(self, database: Database, *, limit: int) -> None:
        self._db = database
        self._limit = limit

    async def record(self, entry: OutboxEntry) -> None:
        async with self._db.write() as connection:
            inserted = await connection.execute(
                sandbox_outbox.insert().values(
                    account_id=entry.account_id,
                    message_id=entry.message_id,
                    channel=entry.channel.value,
                    destination=entry.destination,
                    sender=entry.sender,
                    text=entry.text,
                    sent_at=entry.sent_at,
                )
            )
            newest = inserted.inserted_primary_key[0] if inserted.inserted_primary_key else None
            if newest is not None and newest % 100 == 0:
                await connection.execute(
                    sandbox_outbox.delete().where(o.id <= newest - self._limit)
                )

    async def entries(
        self, account_id: str | None = None, *, after_id: int = 0, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Newest last; `after_id` lets a follower read only what is new."""
        query = sa.select(sandbox_outbox).where(o.id > after_id)
        if account_id is not None:
            query = query.where(o.account_id == account_id)
        order = o.id if after_id else o.id.desc()
        query = query.order_by(order).limit(limit)
        async with self._db.read() as connection:
            rows = (await connection.execute(query)).all()
        result = [dict(r._mapping) for r in rows]
        return sorted(result, key=lambda r: int(r["id"]))
