"""A verification's fallback steps as the dispatcher sees them before sending the next one."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.domain.messages import MessageRecord
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.rows import message_record
from switchboard.storage.sql.tables import messages

m = messages.c
_PREVIOUS = sa.select(messages).where(
    m.verification_id == sa.bindparam("verification_id"), m.step == sa.bindparam("step")
)


class SqlFallbackSteps:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def previous_step(self, message: MessageRecord) -> MessageRecord | None:
        """The step before `message` in its verification's plan; None for a first step."""
        if message.verification_id is None or message.step == 0:
            return None
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    _PREVIOUS,
                    {"verification_id": message.verification_id, "step": message.step - 1},
                )
            ).first()
        return message_record(row) if row else None
