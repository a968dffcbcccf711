"""SQL reads behind the console's message and verification logs (newest first, by account)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from switchboard.domain.messages import MessageRecord, MessageStatus
from switchboard.domain.verification import VerificationRecord, VerificationStatus
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.queue import read_message_events
from switchboard.storage.sql.rows import message_record, verification_record
from switchboard.storage.sql.tables import messages, verifications

m = messages.c
v = verifications.c


class SqlLogStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def search_messages(
        self,
        account_id: str,
        *,
        destination: str | None,
        message_id: str | None,
        numeric_id: int | None,
        status: MessageStatus | None,
        limit: int,
    ) -> list[MessageRecord]:
        # every filter narrows ix_messages_account_time's range, newest first
        query = sa.select(messages).where(m.account_id == account_id)
        if destination is not None:
            query = query.where(m.destination == destination)
        if message_id is not None:
            query = query.where(m.id == message_id)
        if numeric_id is not None:
            query = query.where(m.numeric_id == numeric_id)
        if status is not None:
            query = query.where(m.status == status.value)
        query = query.order_by(m.created_at.desc(), m.id.desc()).limit(limit)
        async with self._db.read() as connection:
            rows = (await connection.execute(query)).all()
        return [message_record(row) for row in rows]

    async def search_verifications(
        self,
        account_id: str,
        *,
        destination: str | None,
        verification_id: int | None,
        status: VerificationStatus | None,
        limit: int,
    ) -> list[VerificationRecord]:
        query = sa.select(verifications).where(v.account_id == account_id)
        if destination is not None:
            query = query.where(v.destination == destination)
        if verification_id is not None:
            query = query.where(v.id == verification_id)
        if status is not None:
            query = query.where(v.status == status.value)
        query = query.order_by(v.created_at.desc(), v.id.desc()).limit(limit)
        async with self._db.read() as connection:
            rows = (await connection.execute(query)).all()
        return [verification_record(row) for row in rows]

    async def get_message(self, account_id: str, message_id: str) -> MessageRecord | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(messages).where(m.id == message_id, m.account_id == account_id)
                )
            ).first()
        return message_record(row) if row else None

    async def message_events(self, account_id: str, message_id: str) -> list[dict[str, Any]]:
        return await read_message_events(self._db, account_id, message_id)
