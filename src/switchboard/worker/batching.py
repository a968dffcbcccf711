"""Group commit: callers await their own item while one flush writes everything queued."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from switchboard import tenancy

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Runs `flush` over every item submitted while the previous flush was running.

    Under light load each item is flushed alone, at once; under heavy load the items that
    arrive during one database transaction share the next one. `flush` returns one result per
    item, in order; if it raises, every caller of that batch gets the exception.
    """

    def __init__(
        self, flush: Callable[[list[T]], Awaitable[Sequence[R]]], *, max_items: int = 1000
    ) -> None:
        self._flush = flush
        self._max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None
        self._last: asyncio.Future[R] | None = None

    async def flushed(self) -> None:
        """Return once every item submitted so far has been flushed (or has failed)."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait((last,))

    async def drain(self) -> None:
        """Return once the flush under way and every item queued behind it are written, even
        those whose callers stopped waiting (a driver cancelled at shutdown): before the
        database's pools close, not while the garbage collector finds the connection.
        `flushed()` does not serve here: a cancelled caller cancels its own future, which
        then reads as done while its batch is still being written."""
        while self._runner is not None and not self._runner.done():
            await asyncio.gather(self._runner, return_exceptions=True)

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._last = future
        if self._runner is None or self._runner.done():
            # its own scope: a batch holds many accounts' items (see `tenancy`)
            self._runner = asyncio.create_task(self._run(), context=tenancy.unscoped_context())
        return await future

    async def _run(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_items]
            del self._pending[: self._max_items]
            try:
                results = await self._flush([item for item, _ in batch])
            except Exception as error:  # every waiter of this batch learns of it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
