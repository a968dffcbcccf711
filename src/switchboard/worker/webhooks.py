"""Claim → POST → settle: drains due webhook deliveries into customers' callback URLs.

No transaction is open while a POST is in flight: a claim commits a lease, the sender posts,
and the outcome is settled in a new transaction guarded by the lease owner. Each endpoint has
at most `max_concurrency_per_endpoint` POSTs in flight in this worker, and deliveries of a
busy endpoint stay in the table instead of holding slots, so a slow customer delays only
itself. A lost worker's leases expire and its deliveries are claimed again (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
from collections import Counter
from datetime import timedelta

from switchboard.callbacks.sender import Attempt, WebhookSender
from switchboard.clock import Clock
from switchboard.config import WebhookSettings
from switchboard.domain.callbacks import (
    Action,
    AttemptRecord,
    DeliveryState,
    DueDelivery,
    RandomSource,
    classify_response,
    retry_delay,
)
from switchboard.observability import get_logger
from switchboard.storage.sql.callbacks import SqlCallbackStore

log = get_logger("switchboard.webhooks")

# A lease outlives the longest attempt (total timeout) with room for a slow settle.
_LEASE_MARGIN_S = 30.0


class WebhookDispatcher:
    def __init__(
        self,
        store: SqlCallbackStore,
        sender: WebhookSender,
        clock: Clock,
        settings: WebhookSettings,
        *,
        jitter: RandomSource | None = None,
    ) -> None:
        self._store = store
        self._sender = sender
        self._clock = clock
        self._settings = settings
        self._jitter = jitter or random.SystemRandom()
        self._lease_s = settings.total_timeout_s + _LEASE_MARGIN_S
        self.owner = f"{socket.gethostname()}:webhooks:{secrets.token_hex(4)}"
        self._busy: Counter[str] = Counter()  # POSTs in flight per account (endpoint)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        """New or replayed deliveries were committed: claim now rather than at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def run(self) -> None:
        self._stopping.clear()
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                claimed = await self.claim()
            except Exception:  # a database hiccup must not kill the worker
                log.exception("webhook dispatcher loop error")
                claimed = 0
            if claimed == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval_s)

    async def stop(self, grace_s: float) -> None:
        """Stop claiming; give POSTs in flight `grace_s`, then cancel them (their leases
        expire and another worker sends them again)."""
        self._stopping.set()
        self._wake.set()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=grace_s or None)
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def close(self) -> None:
        await self._sender.aclose()

    async def claim(self) -> int:
        """Claim due deliveries and start sending them; returns how many were started."""
        free = self._settings.max_in_flight - len(self._in_flight)
        if free <= 0:
            return 0
        limit = self._settings.max_concurrency_per_endpoint
        busy = [account for account, count in self._busy.items() if count >= limit]
        batch = await self._store.claim_due(
            self.owner,
            self._clock.now(),
            min(free, self._settings.batch_size),
            self._lease_s,
            skip_accounts=busy,
        )
        surplus = []
        for delivery in batch:
            if self._busy[delivery.account_id] >= limit:
                surplus.append(delivery.id)
                continue
            self._busy[delivery.account_id] += 1
            task = asyncio.create_task(self._deliver_guarded(delivery))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        await self._store.release(surplus, self.owner)
        return len(batch) - len(surplus)

    async def _deliver_guarded(self, delivery: DueDelivery) -> None:
        try:
            await self.deliver(delivery)
        except Exception:  # the lease brings the delivery back if it could not be settled
            log.exception("webhook delivery failed unexpectedly", delivery_id=delivery.id)
        finally:
            self._busy[delivery.account_id] -= 1
            if self._busy[delivery.account_id] <= 0:
                del self._busy[delivery.account_id]
            self._wake.set()

    async def deliver(self, delivery: DueDelivery) -> None:
        """One attempt of a claimed delivery, and what it leads to."""
        if delivery.endpoint_disabled or delivery.url is None or not delivery.signing_secrets:
            reason = "endpoint disabled" if delivery.endpoint_disabled else "no callback URL"
            await self._store.dead_letter(delivery.id, self.owner, reason, self._clock.now())
            return
        attempt = await self._sender.send(
            delivery.url,
            delivery.payload,
            webhook_id=delivery.id,
            signing_secrets=delivery.signing_secrets,
        )
        now = self._clock.now()
        outcome = classify_response(attempt.status_code, attempt.retry_after, now=now)
        made = delivery.attempts + 1
        record = AttemptRecord(
            attempt=made,
            at=attempt.started_at,
            latency_ms=attempt.latency_ms,
            status_code=attempt.status_code,
            error=_describe(attempt, outcome.reason),
        )
        state, next_attempt_at, disable = DeliveryState.PENDING, None, None
        if outcome.action is Action.DELIVERED:
            state = DeliveryState.DELIVERED
        elif outcome.action is Action.DISABLE_ENDPOINT:
            state, disable = DeliveryState.DEAD, outcome.reason
        else:
            delay = retry_delay(made, self._jitter, retry_after=outcome.retry_after)
            if delay is None:
                state = DeliveryState.DEAD
            else:
                next_attempt_at = now + delay
        settled = await self._store.settle(
            delivery.id, self.owner, record, state=state, url=delivery.url, now=now,
            next_attempt_at=next_attempt_at, disable_endpoint=disable,
        )  # fmt: skip
        log.info(
            "webhook attempt",
            delivery_id=delivery.id,
            attempt=made,
            status_code=attempt.status_code,
            error=attempt.error.value if attempt.error else None,
            latency_ms=attempt.latency_ms,
            outcome=state.value,
            retry_in_s=_seconds(next_attempt_at - now) if next_attempt_at else None,
            settled=settled,
        )


def _describe(attempt: Attempt, reason: str) -> str | None:
    """Short text for the attempt history: None for a 2xx."""
    if attempt.error is not None:
        return f"{attempt.error.value}: {attempt.detail}" if attempt.detail else attempt.error.value
    if attempt.status_code is not None and 200 <= attempt.status_code < 300:
        return None
    return f"HTTP {attempt.status_code}: {attempt.detail}" if attempt.detail else reason


def _seconds(delta: timedelta) -> float:
    return round(delta.total_seconds(), 1)
