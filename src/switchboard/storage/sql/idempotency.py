"""SQL persistence of idempotency keys: an atomic claim, the stored answer, the purge."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from switchboard.domain.idempotency import IdempotencyRecord, KeyState
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import idempotency_keys

_k = idempotency_keys.c
_FIELDS = tuple(f.name for f in dataclasses.fields(IdempotencyRecord))


def _same_key(account_id: str, route: str, key: str) -> sa.ColumnElement[bool]:
    return sa.and_(_k.account_id == account_id, _k.route == route, _k.key == key)


def _record(row: sa.Row[Any]) -> IdempotencyRecord:
    values = dict(row._mapping)
    values["state"] = KeyState(values["state"])
    return IdempotencyRecord(**{name: values[name] for name in _FIELDS})


def _values(record: IdempotencyRecord) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in _FIELDS}
    values["state"] = record.state.value
    return values


class SqlIdempotencyStore:
    def __init__(self, database: Database) -> None:
        self._db = database
        dialect = sqlite if database.is_sqlite else postgresql
        # RETURNING tells whether the row went in: rowcount is -1 here on psycopg
        self._insert_new = (
            dialect.insert(idempotency_keys).on_conflict_do_nothing().returning(_k.owner)
        )

    async def claim(self, record: IdempotencyRecord, now: datetime) -> IdempotencyRecord | None:
        values = _values(record)
        where = _same_key(record.account_id, record.route, record.key)
        async with self._db.write() as connection:
            # On PostgreSQL a concurrent insert of the key makes this one wait for its commit,
            # then do nothing; the SELECT after it (a new snapshot) sees the winner's row.
            inserted = (await connection.execute(self._insert_new.values(values))).first()
            if inserted is not None:
                return None
            row = (await connection.execute(sa.select(idempotency_keys).where(where))).first()
            if row is None:  # purged between the two statements: the key is new again
                await connection.execute(idempotency_keys.insert().values(values))
                return None
            found = _record(row)
            if not found.is_free(now):
                return found
            # Take over from the owner that left it (or from a forgotten answer), unless a
            # concurrent claim took it over first.
            taken = await connection.execute(
                idempotency_keys.update().where(where, _k.owner == found.owner).values(values)
            )
            return None if taken.rowcount == 1 else found

    async def get(self, account_id: str, route: str, key: str) -> IdempotencyRecord | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(idempotency_keys).where(_same_key(account_id, route, key))
                )
            ).first()
        return _record(row) if row else None

    async def renew(
        self, account_id: str, route: str, key: str, owner: str, lease_until: datetime
    ) -> bool:
        async with self._db.write() as connection:
            renewed = await connection.execute(
                idempotency_keys.update()
                .where(
                    _same_key(account_id, route, key),
                    _k.owner == owner,
                    _k.state == KeyState.IN_PROGRESS.value,
                )
                .values(lease_until=lease_until)
            )
        return renewed.rowcount == 1

    async def complete(
        self,
        account_id: str,
        route: str,
        key: str,
        owner: str,
        *,
        status_code: int,
        content_type: str | None,
        body: bytes,
    ) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                idempotency_keys.update()
                .where(_same_key(account_id, route, key), _k.owner == owner)
                .values(
                    state=KeyState.COMPLETED.value,
                    status_code=status_code,
                    content_type=content_type,
                    body=body,
                )
            )

    async def release(self, account_id: str, route: str, key: str, owner: str) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                idempotency_keys.delete().where(
                    _same_key(account_id, route, key), _k.owner == owner
                )
            )

    async def purge_expired(self, now: datetime) -> int:
        async with self._db.write() as connection:
            purged = await connection.execute(idempotency_keys.delete().where(_k.expires_at <= now))
        return purged.rowcount
