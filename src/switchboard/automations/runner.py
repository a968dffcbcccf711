"""The loop that runs due automation jobs: lease, re-check, send, mark; next to the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from switchboard.automations.service import AutomationService
from switchboard.config import AutomationSettings
from switchboard.observability import get_logger

log = get_logger("switchboard.automations.runner")

_PRUNE_EVERY_S = 3600.0


class AutomationRunner:
    """Runs the jobs that are due, then waits `poll_interval_s` (or a `wake()`).

    Any number of runners may share a database: each job is leased by one, and marked sent in
    the transaction that queues its message.
    """

    def __init__(self, service: AutomationService, settings: AutomationSettings) -> None:
        self._service = service
        self._settings = settings
        self.owner = f"automations-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Run what is due now, batch after batch; how many jobs were leased."""
        total = 0
        while not self._stopping:
            leased = await self._service.run_due(self.owner, limit=self._settings.batch_size)
            total += leased
            if leased < self._settings.batch_size:
                break
        return total

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        pruned_at: float | None = None
        while not self._stopping:
            try:
                await self.run_once()
                if pruned_at is None or loop.time() - pruned_at >= _PRUNE_EVERY_S:
                    pruned_at = loop.time()
                    if removed := await self._service.prune_events():
                        log.info("automation events pruned", count=removed)
            except Exception:  # a database hiccup: try again next round
                log.exception("automation runner round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval_s)
            self._wake.clear()

    def stop(self) -> None:
        """Stop after the current job (each job is one transaction: nothing is left halfway)."""
        self._stopping = True
        self._wake.set()
