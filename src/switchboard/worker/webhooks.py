"""Claim → POST → settle: drains due webhook deliveries into customers' callback URLs.

No transaction is open while a POST is in flight: a claim commits a lease, the sender posts,
and the outcomes are settled together in a later transaction guarded by the lease owner (group
commit: one statement for every attempt that finished meanwhile). Each endpoint has at most
`max_concurrency_per_endpoint` POSTs in flight in this worker and at most one and a half
claimed batches waiting for a slot; an endpoint with more than half a batch waiting is not
claimed for, so the rest of its backlog stays in the table instead of holding slots, and a slow
customer delays only itself.
A lost worker's leases expire and its deliveries are claimed again (at least once).

Batched event types (CleverTap's reports) share POSTs: the rows of one account and type that
are claimed or waiting together go out in one body of their `BatchFormat`, up to its
`max_batch`, and each row is settled with its own outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
from collections import Counter, deque
from collections.abc import Mapping
from datetime import datetime, timedelta

from switchboard.callbacks.sender import Attempt, WebhookSender
from switchboard.clock import Clock
from switchboard.config import WebhookSettings
from switchboard.domain.callbacks import (
    Action,
    AttemptRecord,
    BatchFormat,
    DeliveryState,
    DueDelivery,
    Outcome,
    RandomSource,
    Settlement,
    classify_response,
    retry_delay,
)
from switchboard.observability import get_logger
from switchboard.storage.sql.callbacks import SqlCallbackStore

log = get_logger("switchboard.webhooks")

# A lease outlives the longest attempt (total timeout) with room for a slow settle.
_LEASE_MARGIN_S = 30.0
# A claimed delivery waiting for its endpoint's slot starts only while its lease still covers a
# whole attempt and the settle; later it is given back and claimed again.
_WAIT_FOR_SLOT = timedelta(seconds=_LEASE_MARGIN_S / 2)
# Finished attempts are settled together: up to this many, or what finished in this time.
_SETTLE_BATCH = 200
_SETTLE_GATHER_S = 0.02
# Rows in hand across endpoints, per slot of `max_in_flight`: bounds memory, not sending.
_WAITING_PER_SLOT = 10


class WebhookDispatcher:
    def __init__(
        self,
        store: SqlCallbackStore,
        sender: WebhookSender,
        clock: Clock,
        settings: WebhookSettings,
        *,
        jitter: RandomSource | None = None,
        formats: Mapping[str, BatchFormat] | None = None,
    ) -> None:
        self._store = store
        self._formats = dict(formats or {})
        self._sender = sender
        self._clock = clock
        self._settings = settings
        self._jitter = jitter or random.SystemRandom()
        self._lease_s = settings.total_timeout_s + _LEASE_MARGIN_S
        self._limit = settings.max_concurrency_per_endpoint
        self._low_water = settings.batch_size // 2  # rows in hand below which to claim more
        self._short_of_slots = False
        self.owner = f"{socket.gethostname()}:webhooks:{secrets.token_hex(4)}"
        self._busy: Counter[str] = Counter()  # POSTs in flight per endpoint key
        # Claimed deliveries waiting for a slot of their endpoint, with their claim time.
        self._waiting: dict[str, deque[tuple[DueDelivery, datetime]]] = {}
        self._waiting_count = 0
        self._give_back: list[str] = []  # claimed, not sent, to release at the next claim
        # Claimed and not yet settled or given back. A row this worker still holds may come
        # back from a claim when its lease ran out meanwhile (a settle slower than the lease):
        # it is not sent a second time by the worker that holds it.
        self._held: set[str] = set()
        self._skipped: set[str] | None = None  # endpoints the running claim leaves out
        self._in_flight: set[asyncio.Task[None]] = set()
        self._settlements: list[Settlement] = []
        self._settler: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()  # no round of `run` under way
        self._idle.set()

    def wake(self) -> None:
        """New or replayed deliveries were committed: claim now rather than at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def set_share(self, fraction: float) -> None:
        """Hold this worker to its share of `max_concurrency_per_endpoint` (the live workers
        divide it; each keeps at least one slot per endpoint)."""
        cap = self._settings.max_concurrency_per_endpoint
        self._limit = max(1, int(cap * max(0.0, min(1.0, fraction))))

    async def run(self) -> None:
        self._idle.clear()
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                await self._round()
                # Claim again when woken (new rows committed, an endpoint's rows in hand used
                # up, a slot freed), not straight away: with one endpoint's backlog in hand, the
                # next claim would skip that endpoint by scanning its whole backlog for nothing.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval_s)
        finally:
            self._idle.set()

    async def _round(self) -> None:
        try:
            await self.claim()
        except Exception:  # a database hiccup must not kill the worker
            log.exception("webhook dispatcher loop error")

    async def stop(self, grace_s: float) -> None:
        """Stop claiming; give POSTs in flight `grace_s`, then cancel them (their leases
        expire and another worker sends them again). Settles what finished and gives back
        what was claimed but not sent."""
        self._stopping.set()
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        # a claim under way returns its rows after this call: they are started or put waiting
        # before what is waiting is given back and what is in flight is waited for
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_s or None)
        for waiting in self._waiting.values():
            self._give_back += [delivery.id for delivery, _ in waiting]
        self._waiting.clear()
        self._waiting_count = 0
        if self._in_flight:
            left = max(0.0, deadline - loop.time()) if grace_s else None
            await asyncio.wait(set(self._in_flight), timeout=left)
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._settler is not None:
            await asyncio.gather(self._settler, return_exceptions=True)
        await self._settle_pending()
        with contextlib.suppress(Exception):  # their leases bring them back anyway
            await self._release_given_back()

    async def close(self) -> None:
        await self._sender.aclose()

    async def claim(self) -> int:
        """Claim due deliveries and start sending them; returns how many were claimed.

        Endpoints with more than half a batch in hand are skipped; the others are claimed for
        before their rows in hand run out, so a claim waiting for its write turn (SQLite's one
        writer, behind the API's transactions) does not leave their slots idle.
        """
        await self._release_given_back()
        # Only POSTs take slots: rows waiting in hand never stop another endpoint's claim.
        free = min(
            self._settings.max_in_flight - len(self._in_flight),
            _WAITING_PER_SLOT * self._settings.max_in_flight - self._waiting_count,
        )
        if free <= 0 or self._stopping.is_set():
            return 0
        now = self._clock.now()
        limit = min(free, self._settings.batch_size)
        self._skipped = {
            key for key, w in self._waiting.items() if len(w) > self._low_water and " " not in key
        }
        try:
            batch = await self._store.claim_due(
                self.owner, now, limit, self._lease_s, skip_accounts=sorted(self._skipped)
            )
        finally:
            self._skipped = None
        grouped: dict[str, list[DueDelivery]] = {}
        for delivery in batch:
            if delivery.id in self._held:
                continue
            self._held.add(delivery.id)
            key = delivery.endpoint_key
            if delivery.event_type in self._formats:
                grouped.setdefault(key, []).append(delivery)
            elif self._busy[key] < self._limit:
                self._start([delivery])
            else:
                self._waiting.setdefault(key, deque()).append((delivery, now))
                self._waiting_count += 1
        for key, group in grouped.items():
            size = self._formats[group[0].event_type].max_batch
            for start in range(0, len(group), size):
                chunk = group[start : start + size]
                if self._busy[key] < self._limit:
                    self._start(chunk)
                else:
                    self._waiting.setdefault(key, deque()).extend((d, now) for d in chunk)
                    self._waiting_count += len(chunk)
        # Cut short by the slots in flight: claim again as soon as any POST finishes.
        self._short_of_slots = len(batch) == limit < self._settings.batch_size
        if len(batch) == limit and any(
            len(self._waiting.get(d.endpoint_key, ())) <= self._low_water for d in batch
        ):
            self._wake.set()  # a full batch: more may be due for endpoints with room in hand
        return len(batch)

    async def _release_given_back(self) -> None:
        if self._give_back:
            ids, self._give_back = self._give_back, []
            await self._store.release(ids, self.owner)
            self._held.difference_update(ids)

    def _start(self, deliveries: list[DueDelivery]) -> None:
        """One POST: a delivery, or up to a batch of one endpoint key's batched kind."""
        self._busy[deliveries[0].endpoint_key] += 1
        task = asyncio.create_task(self._deliver_guarded(deliveries))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _next_for(self, account: str) -> None:
        """A slot of endpoint key `account` is free: start its next waiting delivery (or batch
        of a batched kind), if still fresh."""
        waiting = self._waiting.get(account)
        chunk: list[DueDelivery] = []
        while waiting:
            delivery, claimed_at = waiting.popleft()
            self._waiting_count -= 1
            if self._stopping.is_set() or self._clock.now() - claimed_at > _WAIT_FOR_SLOT:
                self._give_back.append(delivery.id)
                continue
            chunk.append(delivery)
            batch_format = self._formats.get(delivery.event_type)
            if batch_format is None or len(chunk) >= batch_format.max_batch:
                break
        if chunk:
            self._start(chunk)
        if waiting is not None and not waiting:
            del self._waiting[account]

    async def _deliver_guarded(self, deliveries: list[DueDelivery]) -> None:
        account = deliveries[0].endpoint_key
        try:
            if len(deliveries) == 1 and deliveries[0].event_type not in self._formats:
                delivered = await self.deliver(deliveries[0])
            else:
                delivered = await self.deliver_batch(deliveries)
            if not delivered:
                self._held.difference_update(d.id for d in deliveries)
        except Exception:  # the lease brings the delivery back if it could not be settled
            log.exception("webhook delivery failed unexpectedly", delivery_id=deliveries[0].id)
            self._held.difference_update(d.id for d in deliveries)
        finally:
            self._busy[account] -= 1
            if self._busy[account] <= 0:
                del self._busy[account]
            before = len(self._waiting.get(account, ()))
            self._next_for(account)
            # Its rows in hand fell to half a batch: claim more for it now, unless a claim that
            # includes it is running (another would only scan the backlogs it skips).
            after = len(self._waiting.get(account, ()))
            if self._short_of_slots or (
                before > self._low_water >= after
                and (self._skipped is None or account in self._skipped)
            ):
                self._wake.set()

    async def deliver(self, delivery: DueDelivery) -> bool:
        """One attempt of a claimed delivery; its outcome is settled with others' shortly.
        False when it was settled here already (dead-lettered unsent)."""
        if delivery.endpoint_disabled or delivery.url is None or not delivery.signing_secrets:
            reason = "endpoint disabled" if delivery.endpoint_disabled else "no callback URL"
            await self._store.dead_letter(delivery.id, self.owner, reason, self._clock.now())
            return False
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
            self._drop_waiting(delivery.account_id)
        else:
            delay = retry_delay(made, self._jitter, retry_after=outcome.retry_after)
            if delay is None:
                state = DeliveryState.DEAD
            else:
                next_attempt_at = now + delay
        self._settlements.append(
            Settlement(
                delivery=delivery, attempt=record, state=state, url=delivery.url,
                next_attempt_at=next_attempt_at, disable_endpoint=disable,
            )
        )  # fmt: skip
        if self._settler is None or self._settler.done():
            self._settler = asyncio.create_task(self._settle_pending())
        # A delivered attempt is in the row's history; logging each would cost more than it.
        if state is not DeliveryState.DELIVERED:
            log.info(
                "webhook attempt",
                delivery_id=delivery.id,
                attempt=made,
                status_code=attempt.status_code,
                error=attempt.error.value if attempt.error else None,
                latency_ms=attempt.latency_ms,
                outcome=state.value,
                retry_in_s=_seconds(next_attempt_at - now) if next_attempt_at else None,
            )
        return True

    async def deliver_batch(self, deliveries: list[DueDelivery]) -> bool:
        """One POST for deliveries of a batched kind with one URL; each row is settled with its
        own outcome (the format reads per-record verdicts from the answer). False when they
        were dead-lettered unsent."""
        first = deliveries[0]
        if first.url is None:
            for delivery in deliveries:
                await self._store.dead_letter(
                    delivery.id, self.owner, "no callback URL", self._clock.now()
                )
            return False
        batch_format = self._formats[first.event_type]
        payloads = [d.payload for d in deliveries]
        attempt = await self._sender.send(
            first.url, batch_format.encode(payloads), webhook_id=first.id, signing_secrets=()
        )
        now = self._clock.now()
        verdicts = batch_format.outcomes(attempt.status_code, attempt.body, payloads)
        if verdicts is None:
            whole = classify_response(attempt.status_code, attempt.retry_after, now=now)
            if whole.action is Action.DISABLE_ENDPOINT:  # not the customer's own callback
                whole = Outcome(Action.RETRY, whole.reason)
            verdicts = [whole] * len(deliveries)
        for delivery, outcome in zip(deliveries, verdicts, strict=True):
            made = delivery.attempts + 1
            record = AttemptRecord(
                attempt=made, at=attempt.started_at, latency_ms=attempt.latency_ms,
                status_code=attempt.status_code,
                error=_describe(attempt, outcome.reason) if outcome.action is not Action.REFUSED
                else outcome.reason,
            )  # fmt: skip
            state, next_attempt_at = DeliveryState.PENDING, None
            if outcome.action is Action.DELIVERED:
                state = DeliveryState.DELIVERED
            elif outcome.action is Action.REFUSED:
                state = DeliveryState.DEAD
            else:
                delay = retry_delay(made, self._jitter, retry_after=outcome.retry_after)
                if delay is None:
                    state = DeliveryState.DEAD
                else:
                    next_attempt_at = now + delay
            self._settlements.append(
                Settlement(
                    delivery=delivery, attempt=record, state=state, url=first.url,
                    next_attempt_at=next_attempt_at,
                )
            )  # fmt: skip
        if self._settler is None or self._settler.done():
            self._settler = asyncio.create_task(self._settle_pending())
        if verdicts[0].action is not Action.DELIVERED:
            log.info(
                "webhook batch attempt",
                delivery_id=first.id,
                deliveries=len(deliveries),
                status_code=attempt.status_code,
                error=attempt.error.value if attempt.error else None,
                latency_ms=attempt.latency_ms,
            )
        return True

    def _drop_waiting(self, account: str) -> None:
        """The endpoint is being disabled: its waiting deliveries go back to the table, where
        the next claim dead-letters them unsent."""
        waiting = self._waiting.pop(account, None)
        if waiting:
            self._waiting_count -= len(waiting)
            self._give_back += [delivery.id for delivery, _ in waiting]

    async def _settle_pending(self) -> None:
        """Write every finished attempt, in few transactions. While attempts finish faster
        than they are written, those finishing within `_SETTLE_GATHER_S` of each other share
        a transaction (the receiver has its callback already); at a trickle each is written
        at once, so a lease is not held longer than needed."""
        busy = False  # attempts finished while the previous batch was being written
        while self._settlements:
            if busy and len(self._settlements) < _SETTLE_BATCH and not self._stopping.is_set():
                await asyncio.sleep(_SETTLE_GATHER_S)
            busy = True
            batch, self._settlements = self._settlements, []
            try:
                written = await self._store.settle_many(self.owner, batch, self._clock.now())
            except Exception:  # their leases bring the deliveries back for another attempt
                log.exception("settling webhook attempts failed", attempts=len(batch))
                continue
            finally:
                self._held.difference_update(s.delivery.id for s in batch)
            if 0 <= written < len(batch):
                log.warning("webhook leases lost before settling", lost=len(batch) - written)


def _describe(attempt: Attempt, reason: str) -> str | None:
    """Short text for the attempt history: None for a 2xx."""
    if attempt.error is not None:
        return f"{attempt.error.value}: {attempt.detail}" if attempt.detail else attempt.error.value
    if attempt.status_code is not None and 200 <= attempt.status_code < 300:
        return None
    return f"HTTP {attempt.status_code}: {attempt.detail}" if attempt.detail else reason


def _seconds(delta: timedelta) -> float:
    return round(delta.total_seconds(), 1)
