"""Items gathered during a write transaction and written together as its last statements."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.storage.sql.engines import before_commit

T = TypeVar("T")


class TransactionBuffer(Generic[T]):
    """`add` keeps an item with its transaction; `write(connection, items)` gets them all
    once, just before that transaction commits (a receipt batch then costs one insert, not
    one per message). Items of a transaction that rolls back are dropped with it; outside a
    `Database.write()` transaction an item is written at once."""

    def __init__(self, write: Callable[[AsyncConnection, list[T]], Awaitable[None]]) -> None:
        self._write = write
        self._items: weakref.WeakKeyDictionary[AsyncConnection, list[T]] = (
            weakref.WeakKeyDictionary()
        )

    async def add(self, connection: AsyncConnection, item: T) -> None:
        self._items.setdefault(connection, []).append(item)
        await before_commit(connection, self._flush)

    async def _flush(self, connection: AsyncConnection) -> None:
        items = self._items.pop(connection, [])
        if items:
            await self._write(connection, items)
