"""SQL record of live delivery workers (their heartbeats)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import worker_presence

w = worker_presence.c


class SqlWorkerPresence:
    def __init__(self, database: Database) -> None:
        self._db = database
        dialect = sqlite if database.is_sqlite else postgresql
        statement = dialect.insert(worker_presence).values(
            owner=sa.bindparam("owner"), seen_at=sa.bindparam("seen_at")
        )
        self._beat = statement.on_conflict_do_update(
            index_elements=[w.owner], set_={"seen_at": statement.excluded.seen_at}
        )

    async def beat(self, owner: str, now: datetime, live_since: datetime) -> int:
        """Record `owner` alive at `now`; how many workers (this one included) are alive,
        that is seen since `live_since`. Rows long dead are removed on the way."""
        async with self._db.write() as connection:
            await connection.execute(self._beat, {"owner": owner, "seen_at": now})
            await connection.execute(
                worker_presence.delete().where(w.seen_at < live_since - (now - live_since) * 10)
            )
            live = await connection.scalar(
                sa.select(sa.func.count()).where(w.seen_at >= live_since)
            )
        return max(1, int(live or 0))

    async def leave(self, owner: str) -> None:
        async with self._db.write() as connection:
            await connection.execute(worker_presence.delete().where(w.owner == owner))
