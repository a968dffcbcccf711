"""SQL persistence of the sandbox carrier's outbox, bounded to the newest entries."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from switchboard.channels.sandbox import OutboxEntry
from switchboard.storage.sql.batches import Batches, Waiting
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import sandbox_outbox

o = sandbox_outbox.c


class _Record(Waiting[None]):
    __slots__ = ("entry",)

    def __init__(self, entry: OutboxEntry) -> None:
        super().__init__()
        self.entry = entry


class SqlOutbox:
    def __init__(self, database: Database, *, limit: int) -> None:
        self._db = database
        self._limit = limit
        # Every message the sandbox "sends" is one row: entries arriving together share a
        # transaction (a write transaction each was an eighth of the accept benchmark's CPU).
        self._records: Batches[_Record] = Batches(
            self._write, key=id, max_size=500, name="sandbox-outbox"
        )

    async def record(self, entry: OutboxEntry) -> None:
        item = _Record(entry)
        await self._records.submit(item)
        item.done.result()

    async def _write(self, batch: list[_Record]) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                sandbox_outbox.insert(),
                [
                    {"account_id": x.entry.account_id, "message_id": x.entry.message_id,
                     "channel": x.entry.channel.value, "destination": x.entry.destination,
                     "sender": x.entry.sender, "text": x.entry.text, "sent_at": x.entry.sent_at}
                    for x in batch
                ],
            )  # fmt: skip
            newest = await connection.scalar(sa.select(sa.func.max(o.id)))
            if newest is not None and newest // 100 != (newest - len(batch)) // 100:
                await connection.execute(
                    sandbox_outbox.delete().where(o.id <= newest - self._limit)
                )
        for item in batch:
            item.succeed(None)

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
