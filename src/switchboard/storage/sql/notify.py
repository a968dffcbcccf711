"""Wake-ups between processes sharing one PostgreSQL: LISTEN/NOTIFY on `switchboard_wake`.

An API process (`serve --no-worker`, on this host or another) that queued work sends a NOTIFY;
every worker process LISTENs and wakes its dispatchers at once instead of at its next poll
(`worker.poll_interval_s`). Best effort both ways: a NOTIFY that fails or a listener that is
reconnecting costs at most one poll interval, never a message — the rows are the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import psycopg

from switchboard.observability import get_logger

log = get_logger("switchboard.notify")

CHANNEL = "switchboard_wake"
_RECONNECT_S = (0.5, 1.0, 2.0, 5.0)


def _conninfo(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


class PgWakeChannel:
    def __init__(self, database_url: str) -> None:
        self._conninfo = _conninfo(database_url)
        self._sender: psycopg.AsyncConnection[object] | None = None
        self._pending = False
        self._task: asyncio.Task[None] | None = None

    # -- sending (API processes) --------------------------------------------------------------

    def __call__(self) -> None:
        """Ask for a NOTIFY; a burst of calls while one is on its way sends one more, not many."""
        self._pending = True
        if self._task is None:
            with contextlib.suppress(RuntimeError):  # no running loop (a CLI command): polls
                self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        try:
            while self._pending:
                self._pending = False
                try:
                    if self._sender is None or self._sender.closed:
                        self._sender = await psycopg.AsyncConnection.connect(
                            self._conninfo, autocommit=True
                        )
                    await self._sender.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
                except (psycopg.Error, OSError) as exc:
                    log.warning("wake-up not sent; workers will poll", error=type(exc).__name__)
                    self._sender = None
                    return
        finally:
            self._task = None

    # -- listening (worker processes) ---------------------------------------------------------

    async def listen(self, wake: Callable[[], None]) -> None:
        """Run until cancelled: wake on every notification, reconnect after a failure."""
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    failures = 0
                    wake()  # whatever was queued while we were not listening
                    async for _ in connection.notifies():
                        wake()
            except (psycopg.Error, OSError) as exc:
                delay = _RECONNECT_S[min(failures, len(_RECONNECT_S) - 1)]
                failures += 1
                log.warning("wake-up listener lost; reconnecting", error=type(exc).__name__)
                await asyncio.sleep(delay)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sender is not None:
            await self._sender.close()
            self._sender = None
