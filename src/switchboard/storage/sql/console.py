"""SQL persistence of the console's operators and sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from switchboard.console.store import ConsoleSession, Operator, SessionKind
from switchboard.errors import DuplicateResourceError
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import console_sessions, operators

_SESSION = tuple(ConsoleSession.__dataclass_fields__)
_OPERATOR = tuple(Operator.__dataclass_fields__)


def _session(row: sa.Row[Any]) -> ConsoleSession:
    values = dict(row._mapping)
    values["kind"] = SessionKind(values["kind"])
    return ConsoleSession(**{name: values[name] for name in _SESSION})


def _operator(row: sa.Row[Any]) -> Operator:
    return Operator(**{name: row._mapping[name] for name in _OPERATOR})


class SqlConsoleStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def add_session(self, session: ConsoleSession) -> None:
        values = {name: getattr(session, name) for name in _SESSION}
        values["kind"] = session.kind.value
        async with self._db.write() as connection:
            await connection.execute(console_sessions.insert().values(values))

    async def get_session(self, digest: str) -> ConsoleSession | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(console_sessions).where(console_sessions.c.digest == digest)
                )
            ).first()
        return _session(row) if row else None

    async def set_flash(self, digest: str, sealed: str) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                console_sessions.update()
                .where(console_sessions.c.digest == digest)
                .values(flash=sealed)
            )

    async def take_flash(self, digest: str) -> str | None:
        c = console_sessions.c
        async with self._db.write() as connection:
            sealed = await connection.scalar(sa.select(c.flash).where(c.digest == digest))
            if sealed is None:
                return None
            taken = await connection.execute(
                console_sessions.update()
                .where(c.digest == digest, c.flash == sealed)
                .values(flash=None)
            )
        return sealed if taken.rowcount == 1 else None

    async def revoke_session(self, digest: str, now: datetime) -> None:
        c = console_sessions.c
        async with self._db.write() as connection:
            await connection.execute(
                console_sessions.update()
                .where(c.digest == digest, c.revoked_at.is_(None))
                .values(revoked_at=now)
            )

    async def purge_sessions(self, expired_before: datetime) -> int:
        async with self._db.write() as connection:
            result = await connection.execute(
                console_sessions.delete().where(console_sessions.c.expires_at < expired_before)
            )
        return int(result.rowcount or 0)

    async def add_operator(self, operator: Operator) -> None:
        if await self.find_operator(operator.email) is not None:
            raise DuplicateResourceError("an operator with this e-mail already exists")
        async with self._db.write() as connection:
            await connection.execute(
                operators.insert().values({name: getattr(operator, name) for name in _OPERATOR})
            )

    async def get_operator(self, operator_id: str) -> Operator | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(sa.select(operators).where(operators.c.id == operator_id))
            ).first()
        return _operator(row) if row else None

    async def find_operator(self, email: str) -> Operator | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(operators).where(
                        sa.func.lower(operators.c.email) == email.strip().lower()
                    )
                )
            ).first()
        return _operator(row) if row else None

    async def list_operators(self) -> list[Operator]:
        async with self._db.read() as connection:
            rows = (
                await connection.execute(sa.select(operators).order_by(operators.c.email))
            ).all()
        return [_operator(row) for row in rows]
