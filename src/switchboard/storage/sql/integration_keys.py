"""SQL persistence of integration keys (only their keyed digests)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from switchboard.domain.integration_keys import IntegrationKey
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import integration_keys

_COLUMNS = ("id", "account_id", "name", "hint", "created_at", "last_used_at", "revoked_at")


def _key(row: sa.Row[Any]) -> IntegrationKey:
    values = row._mapping
    return IntegrationKey(**{name: values[name] for name in _COLUMNS})


class SqlIntegrationKeyStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def add_key(self, key: IntegrationKey, digest: str) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                integration_keys.insert().values(
                    {**{name: getattr(key, name) for name in _COLUMNS}, "digest": digest}
                )
            )

    async def list_keys(self, account_id: str) -> list[IntegrationKey]:
        async with self._db.read() as connection:
            rows = (
                await connection.execute(
                    sa.select(integration_keys)
                    .where(integration_keys.c.account_id == account_id)
                    .order_by(integration_keys.c.created_at, integration_keys.c.id)
                )
            ).all()
        return [_key(row) for row in rows]

    async def find_by_digest(self, digest: str) -> IntegrationKey | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(integration_keys).where(integration_keys.c.digest == digest)
                )
            ).first()
        return _key(row) if row else None

    async def revoke_key(
        self, account_id: str, key_id: str, now: datetime
    ) -> IntegrationKey | None:
        async with self._db.write() as connection:
            await connection.execute(
                integration_keys.update()
                .where(
                    integration_keys.c.id == key_id,
                    integration_keys.c.account_id == account_id,
                    integration_keys.c.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
            row = (
                await connection.execute(
                    sa.select(integration_keys).where(
                        integration_keys.c.id == key_id,
                        integration_keys.c.account_id == account_id,
                    )
                )
            ).first()
        return _key(row) if row else None

    async def touch_key(self, key_id: str, now: datetime) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                integration_keys.update()
                .where(integration_keys.c.id == key_id)
                .values(last_used_at=now)
            )
