"""SQL persistence of silent authentication sessions, and the verification changes they make."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.domain.messages import Channel, MessageStatus
from switchboard.domain.verification import VerificationRecord, VerificationStatus
from switchboard.silentauth.store import SessionStatus, SilentSession
from switchboard.storage.sql.charges import MessageCharges
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.queue import add_event
from switchboard.storage.sql.rows import verification_record
from switchboard.storage.sql.tables import messages, silent_auth_sessions, verifications
from switchboard.storage.sql.verifications import VerificationListener, end_verification

s = silent_auth_sessions.c
_REASON = "not needed: silent authentication confirmed the number"


def _session(row: sa.Row[Any]) -> SilentSession:
    values = row._mapping
    return SilentSession(
        id=values["id"],
        verification_id=values["verification_id"],
        account_id=values["account_id"],
        operator=values["operator"],
        destination=values["destination"],
        channel=Channel(values["channel"]),
        state_hash=values["state_hash"],
        code_verifier=values["code_verifier"],
        status=SessionStatus(values["status"]),
        outcome=values["outcome"],
        created_at=values["created_at"],
        expires_at=values["expires_at"],
        used_at=values["used_at"],
        ended_at=values["ended_at"],
    )


class SqlSilentAuthStore:
    def __init__(
        self,
        database: Database,
        listener: VerificationListener | None = None,
        *,
        charges: MessageCharges | None = None,
    ) -> None:
        self._db = database
        self._listener = listener or VerificationListener()
        self._charges = charges or MessageCharges()

    async def add_session(self, session: SilentSession) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                silent_auth_sessions.insert().values(
                    id=session.id,
                    verification_id=session.verification_id,
                    account_id=session.account_id,
                    operator=session.operator,
                    destination=session.destination,
                    channel=session.channel.value,
                    state_hash=session.state_hash,
                    code_verifier=session.code_verifier,
                    status=session.status.value,
                    outcome=session.outcome,
                    created_at=session.created_at,
                    expires_at=session.expires_at,
                )
            )

    async def claim_session(self, state_hash: str, now: datetime) -> SilentSession | None:
        async with self._db.write() as connection:
            row = (
                await connection.execute(
                    silent_auth_sessions.update()
                    .where(s.state_hash == state_hash, s.used_at.is_(None), s.expires_at > now)
                    .values(used_at=now)
                    .returning(*silent_auth_sessions.c)
                )
            ).first()
        return _session(row) if row is not None else None

    async def session_for(self, verification_id: int) -> SilentSession | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(silent_auth_sessions).where(s.verification_id == verification_id)
                )
            ).first()
        return _session(row) if row is not None else None

    async def complete(self, session: SilentSession, now: datetime) -> VerificationRecord | None:
        v = verifications.c
        async with self._db.write() as connection:
            row = (
                await connection.execute(
                    verifications.update()
                    .where(
                        v.id == session.verification_id,
                        v.status == VerificationStatus.PENDING.value,
                        v.expires_at > now,
                    )
                    .values(status=VerificationStatus.VERIFIED.value, ended_at=now)
                    .returning(*verifications.c)
                )
            ).first()
            if row is None:
                return None
            record = verification_record(row)
            await end_verification(
                connection, record, now, _REASON, charges=self._charges, listener=self._listener
            )
            await self._end(connection, session, SessionStatus.VERIFIED, None, now)
        return record

    async def fall_back(self, session: SilentSession, reason: str, now: datetime) -> int:
        m = messages.c
        async with self._db.write() as connection:
            released = (
                await connection.execute(
                    messages.update()
                    .where(
                        m.verification_id == session.verification_id,
                        m.step == 0,
                        m.status == MessageStatus.QUEUED.value,
                        m.not_before > now,
                    )
                    .values(not_before=now, updated_at=now)
                    .returning(m.id, m.account_id)
                )
            ).all()
            for message in released:
                await add_event(
                    connection, message.id, message.account_id, MessageStatus.QUEUED, now,
                    detail=f"silent authentication failed: {reason}",
                )  # fmt: skip
            await self._end(connection, session, SessionStatus.FALLBACK, reason, now)
        return len(released)

    @staticmethod
    async def _end(
        connection: AsyncConnection,
        session: SilentSession,
        status: SessionStatus,
        outcome: str | None,
        now: datetime,
    ) -> None:
        await connection.execute(
            silent_auth_sessions.update()
            .where(s.id == session.id, s.status == SessionStatus.PENDING.value)
            .values(status=status.value, outcome=(outcome or "")[:200] or None, ended_at=now)
        )
