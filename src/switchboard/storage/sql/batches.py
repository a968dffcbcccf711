"""Group commit for request paths: what waits for the writer goes in together.

A lone request goes at once (a batch of one); under load each transaction carries what
arrived while the previous one ran, up to `max_size`. One batch holds at most one item per
key (the same number, the same verification): a second one waits for the next batch, so it
sees the first one's rows. An item whose request is gone before its batch starts is dropped
unwritten. A batch that PostgreSQL aborts to break a deadlock is run again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError

from switchboard import tenancy

R = TypeVar("R")

_RETRIES = 3


class Waiting(Generic[R]):
    """One item of a batch and the future its request awaits."""

    def __init__(self) -> None:
        self.done: asyncio.Future[R] = asyncio.get_running_loop().create_future()

    def succeed(self, result: R) -> None:
        if not self.done.done():
            self.done.set_result(result)

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


W = TypeVar("W", bound=Waiting)  # type: ignore[type-arg]


def is_deadlock(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in {"40P01", "40001"}


class Batches(Generic[W]):
    """`run(batch)` writes a batch in one transaction and settles every item's future."""

    def __init__(
        self,
        run: Callable[[list[W]], Awaitable[None]],
        *,
        key: Callable[[W], Hashable],
        max_size: int,
        name: str,
    ) -> None:
        self._run = run
        self._key = key
        self._max_size = max_size
        self._name = name
        self._waiting: list[W] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: W) -> None:
        """Queue `item`; returns when its batch is done (its future holds the outcome)."""
        self._waiting.append(item)
        if self._task is None:
            # unscoped: a batch commits many accounts' rows (see `tenancy`)
            self._task = asyncio.create_task(
                self._drain(), name=self._name, context=tenancy.unscoped_context()
            )
        await asyncio.wait((item.done,))

    def _next(self) -> list[W]:
        batch: list[W] = []
        rest: list[W] = []
        keys: set[Hashable] = set()
        for item in self._waiting:
            if item.done.done():  # the request was cancelled while it waited
                continue
            key = self._key(item)
            if len(batch) < self._max_size and key not in keys:
                batch.append(item)
                keys.add(key)
            else:
                rest.append(item)
        self._waiting = rest
        return batch

    async def _drain(self) -> None:
        batch: list[W] = []
        try:
            while batch := self._next():
                await self._attempt(batch)
        except BaseException as exc:  # cancelled (shutdown): nobody may wait forever
            for item in [*batch, *self._waiting]:
                item.fail(exc)
            self._waiting.clear()
            raise
        finally:
            self._task = None

    async def _attempt(self, batch: list[W]) -> None:
        for attempt in range(_RETRIES + 1):
            try:
                await self._run([x for x in batch if not x.done.done()])
            except DBAPIError as exc:
                # PostgreSQL broke a lock cycle with a worker's transaction by aborting this
                # one: nothing of it was kept, run it again.
                if is_deadlock(exc) and attempt < _RETRIES:
                    continue
                for item in batch:
                    item.fail(exc)
            except Exception as exc:  # the batch's transaction failed: all of it did
                for item in batch:
                    item.fail(exc)
            return
