"""Limits meant for the whole cluster (a connector's TPS, callbacks in flight per endpoint),
divided among the live delivery workers: each worker beats in the database and takes 1/n."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Iterable
from datetime import timedelta
from typing import Protocol, runtime_checkable

from switchboard.clock import Clock
from switchboard.observability import get_logger
from switchboard.storage.sql.presence import SqlWorkerPresence

log = get_logger("switchboard.worker")


@runtime_checkable
class Shared(Protocol):
    def set_share(self, fraction: float) -> None: ...


class LimitShares:
    """Every `interval_s` this worker records itself alive and hands each limited part its
    share, 1/n of n workers seen within `ttl_s`. A worker that dies stops beating: its share
    returns to the others within `ttl_s`. A database hiccup keeps the last share (a worker
    never claims the whole limit because it could not count the others)."""

    def __init__(
        self,
        presence: SqlWorkerPresence,
        parts: Iterable[Shared],
        clock: Clock,
        *,
        interval_s: float = 5.0,
        ttl_s: float = 15.0,
    ) -> None:
        self._presence = presence
        self._parts = list(parts)
        self._clock = clock
        self._interval_s = interval_s
        self._ttl = timedelta(seconds=ttl_s)
        self.owner = f"{socket.gethostname()}:{secrets.token_hex(4)}"
        self.workers = 1

    async def update(self) -> int:
        now = self._clock.now()
        self.workers = await self._presence.beat(self.owner, now, now - self._ttl)
        for part in self._parts:
            part.set_share(1 / self.workers)
        return self.workers

    async def run(self) -> None:
        while True:
            try:
                before = self.workers
                if await self.update() != before:
                    log.info("limits shared among workers", workers=self.workers)
            except Exception:  # keep the last share; try again next round
                log.exception("worker presence update failed")
            await asyncio.sleep(self._interval_s)

    async def leave(self) -> None:
        try:
            await self._presence.leave(self.owner)
        except Exception:  # its row ages out within ttl_s
            log.exception("could not record this worker's departure")
