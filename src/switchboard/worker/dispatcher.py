"""Claim → route → send → settle: drains the message queue into the channel drivers."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from switchboard.channels.base import (
    ChannelDriver,
    DeliveryReport,
    OutboundMessage,
    ReportState,
    RevocableDriver,
    SendError,
    SendErrorKind,
    SendResult,
)
from switchboard.clock import Clock
from switchboard.config import WorkerSettings
from switchboard.domain.messages import Channel, Lane, MessageRecord, MessageStatus, MessageType
from switchboard.domain.routing import SANDBOX, Route, choose_connectors
from switchboard.metrics import Metrics
from switchboard.observability import get_logger
from switchboard.storage.sql.queue import SqlMessageQueue, Submitted
from switchboard.storage.sql.steps import SqlFallbackSteps
from switchboard.worker.batching import GroupCommit

log = get_logger("switchboard.worker")

# Bulk messages claimed per transaction (into the local buffer), and rows per settle.
BULK_CLAIM = 256
SETTLE_BATCH = 256

_Outcome = tuple[str | None, SendResult | SendError]
_EXPIRED: _Outcome = (None, SendError(SendErrorKind.PERMANENT, "expired"))
_NO_ROUTE: _Outcome = (None, SendError(SendErrorKind.PERMANENT, "no route"))
_SUPERSEDED: _Outcome = (None, SendError(SendErrorKind.PERMANENT, "previous step delivered"))


class Dispatcher:
    def __init__(
        self,
        queue: SqlMessageQueue,
        drivers: Mapping[str, ChannelDriver],
        routes: Sequence[Route],
        clock: Clock,
        settings: WorkerSettings,
        *,
        test_numbers: frozenset[str] = frozenset(),
        fallback_step_timeout_s: float = 30.0,
        max_in_flight: int = 5000,
        metrics: Metrics | None = None,
        steps: SqlFallbackSteps | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        # At most a few hundred rows per settle transaction: on SQLite an OTP's claim waits
        # for the one writer, so no write transaction may run long.
        self._settler: GroupCommit[Submitted, int] = GroupCommit(
            self._settle_submitted, max_items=SETTLE_BATCH
        )
        # Receipts wait for the settles already submitted: a receipt that beat its
        # submit_sm_resp then finds its message instead of being parked and matched later.
        queue.settles_first(self._settler.flushed)
        self._queue = queue
        self._drivers = drivers
        self._routes = routes
        self._clock = clock
        self._settings = settings
        self._test_numbers = test_numbers
        self._routing: dict[tuple[Channel, MessageType, str], tuple[str, ...]] = {}
        self._submitted: dict[str, Any] = {}  # connector → its "submitted" counter
        # The longest route prefix: all of a destination's digits that routing looks at.
        self._prefix_len = max((len(p) for r in routes for p in r.prefixes), default=0)
        self._step_timeout_s = fallback_step_timeout_s
        self._steps = steps
        self.owner = f"{socket.gethostname()}:{secrets.token_hex(4)}"
        self._bulk_in_driver = 0
        self._bulk_ready: deque[MessageRecord] = deque()
        self._max_in_flight = max_in_flight
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()  # no round of `run` under way
        self._idle.set()
        self._renewed_at = float("-inf")  # loop time of the last lease renewal

    def wake(self) -> None:
        """New work was committed: claim now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        self._idle.clear()
        try:
            while not self._stopping.is_set():
                if await self._round() == 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval_s)
        finally:
            self._idle.set()

    async def _round(self) -> int:
        """Renew and reap when due, then claim; how many messages were claimed."""
        try:
            # Renew well before expiry; reap at the same pace (a dead worker's leases run out).
            now_s = asyncio.get_running_loop().time()
            if now_s - self._renewed_at >= self._settings.lease_s / 3:
                self._renewed_at = now_s
                if self._in_flight:
                    await self._queue.renew_leases(
                        self.owner, self._clock.now(), self._settings.lease_s
                    )
                await self._queue.reap_expired_leases(self._clock.now())
            return await self._claim()
        except Exception:  # a database hiccup must not kill the worker
            log.exception("dispatcher loop error")
            return 0

    async def stop(self, grace_s: float) -> None:
        """Stop claiming and wait (bounded) for in-flight sends to settle.

        A round of `run` under way is waited for first: a claim it is making returns its rows
        after this was called, and the sends it starts would otherwise outlive the stop (past
        the pools' close, holding a connection).
        """
        self._stopping.set()
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_s)
        if self._bulk_ready:  # claimed, never handed to a driver: back to the queue now
            unsent = [message.id for message in self._bulk_ready]
            self._bulk_ready.clear()
            try:
                await self._queue.release_unsent(self.owner, unsent, self._clock.now())
            except Exception:  # their leases run out and the reaper requeues them
                log.exception("could not release unsent messages")
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=max(0.0, deadline - loop.time()))
        await self._settler.drain()

    async def _claim(self) -> int:
        """Claim what can be sent soon: OTPs up to the in-flight limit, bulk ahead of need.

        Lane order alone is not enough: bulk messages handed to a driver wait inside it (window,
        TPS) ahead of a new OTP, so bulk messages are claimed into a local buffer and handed to
        the drivers only while fewer than `bulk_in_flight` of them are inside one. OTPs skip
        the buffer. OTP and bulk claims share one write transaction.
        """
        free = self._max_in_flight - len(self._in_flight)
        if free <= 0:
            return 0
        bulk_wanted = 0
        if len(self._bulk_ready) < self._settings.bulk_in_flight:
            bulk_wanted = min(free, max(self._settings.batch_size, BULK_CLAIM))
        otps, bulk = await self._queue.claim_lanes(
            self.owner, self._clock.now(), self._settings.lease_s,
            otp_limit=min(free, self._settings.batch_size), bulk_limit=bulk_wanted,
        )  # fmt: skip
        for message in otps:
            self._start(message, is_bulk=False)
        self._bulk_ready.extend(bulk)
        self._pump()
        return len(otps) + len(bulk)

    def _pump(self) -> None:
        """Hand buffered bulk messages to the drivers while they hold fewer than the cap."""
        cap = self._settings.bulk_in_flight
        ready = self._bulk_ready
        while ready and self._bulk_in_driver < cap:
            self._bulk_in_driver += 1
            self._start(ready.popleft(), is_bulk=True)

    def _start(self, message: MessageRecord, *, is_bulk: bool) -> None:
        task = asyncio.create_task(self._send_guarded(message, is_bulk))
        self._in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if len(self._bulk_ready) < self._settings.bulk_in_flight:
            self._wake.set()  # capacity freed: claim more now rather than at the next poll

    async def _send_guarded(self, message: MessageRecord, is_bulk: bool) -> None:
        try:
            outcome = await self._hand_over(message)
        except Exception:  # the lease brings the message back if we could not settle
            log.exception("send failed unexpectedly", message_id=message.id)
            return
        finally:
            if is_bulk:  # out of the driver: the next buffered message may go in
                self._bulk_in_driver -= 1
                self._pump()
                if len(self._bulk_ready) < self._settings.bulk_in_flight:
                    self._wake.set()
        try:
            await self._settle(message, outcome)
        except Exception:
            log.exception("settle failed unexpectedly", message_id=message.id)

    def _candidates(self, message: MessageRecord) -> tuple[str, ...]:
        if message.destination in self._test_numbers:
            return (SANDBOX,)  # test numbers never reach a carrier
        # Routes match on a prefix of at most _prefix_len digits: the answer for a destination
        # is the answer for that prefix, computed once.
        digits = message.destination.lstrip("+")[: self._prefix_len]
        key = (message.channel, message.message_type, digits)
        names = self._routing.get(key)
        if names is None:
            if len(self._routing) > 10_000:
                self._routing.clear()
            names = self._routing[key] = choose_connectors(
                self._routes, message.channel, message.destination, message.message_type
            )
        return names

    async def send(self, message: MessageRecord) -> None:
        """Send one claimed message through its route's drivers and settle the outcome."""
        await self._settle(message, await self._hand_over(message))

    async def _hand_over(self, message: MessageRecord) -> _Outcome:
        """Try the route's drivers in order; what happened, for _settle."""
        now = self._clock.now()
        if message.expires_at is not None and now >= message.expires_at:
            return _EXPIRED
        if message.step > 0 and not await self._withdraw_previous_step(message, now):
            return _SUPERSEDED
        names = self._candidates(message)
        if not names:
            return _NO_ROUTE
        outbound = _outbound(message)
        last_error: SendError | None = None
        for name in names:
            driver = self._drivers.get(name)
            if driver is None or message.channel not in driver.channels:
                continue
            if not driver.is_available():
                last_error = SendError(SendErrorKind.TRANSIENT, f"connector {name} is down")
                continue
            try:
                result = await driver.send(outbound)
            except SendError as error:
                self._metrics.submits.labels(name, error.kind.value.lower()).inc()
                last_error = error
                if error.kind is SendErrorKind.TRANSIENT:
                    continue  # failover: the next connector may take it
                return name, error
            submitted = self._submitted.get(name)
            if submitted is None:
                submitted = self._submitted[name] = self._metrics.submits.labels(name, "submitted")
            submitted.inc()
            return name, result
        return None, last_error or SendError(
            SendErrorKind.TRANSIENT, "no connector can carry this channel"
        )

    async def _withdraw_previous_step(self, message: MessageRecord, now: datetime) -> bool:
        """Before a fallback step goes out, withdraw the previous step's message where the
        provider can (RCS): the user should not get the code twice. False when the previous
        message turned out to be delivered, so this step is not needed."""
        previous = await self._steps.previous_step(message) if self._steps else None
        if previous is None or previous.status is not MessageStatus.SUBMITTED:
            return True
        connector = previous.connector or ""
        driver: object = self._drivers.get(connector)  # any driver may also be revocable
        if not isinstance(driver, RevocableDriver):
            return True
        try:
            withdrawn = await driver.revoke(_outbound(previous))
        except SendError as error:  # cannot tell: a second copy beats no code at all
            log.warning("revoke before fallback failed", message_id=previous.id, error=error.reason)
            return True
        if not withdrawn:
            return False
        report = DeliveryReport(
            connector=connector,
            provider_id=previous.id,
            state=ReportState.EXPIRED,
            error_code="REVOKED",
            done_at=now,
            raw={"reason": f"revoked before the {message.channel} fallback"},
        )
        await self._queue.record_reports([report], now)
        return True

    async def _settle(self, message: MessageRecord, outcome: _Outcome) -> None:
        now = self._clock.now()
        if outcome is _SUPERSEDED:
            await self._queue.settle_failed(
                message.id, self.owner, status=MessageStatus.CANCELLED,
                reason="not needed: the previous channel's message was delivered", now=now,
            )  # fmt: skip
            return
        if outcome is _EXPIRED:
            await self._queue.settle_failed(
                message.id, self.owner, status=MessageStatus.CANCELLED,
                reason="validity ended before it could be sent", now=now,
            )  # fmt: skip
            return
        if outcome is _NO_ROUTE:
            await self._queue.settle_failed(
                message.id, self.owner, status=MessageStatus.FAILED,
                reason=f"no route for {message.channel} to {message.destination[:4]}…", now=now,
            )  # fmt: skip
            return
        name, result = outcome
        if isinstance(result, SendError):
            await self._settle_error(message, name, result)
            return
        assert name is not None
        await self._settler.submit(
            Submitted(message=message, connector=name, provider_ids=result.provider_ids,
                      segments=result.segments)
        )  # fmt: skip

    async def _settle_submitted(self, items: list[Submitted]) -> list[int]:
        await self._queue.settle_submitted_batch(
            self.owner, items, now=self._clock.now(), next_step_delay_s=self._step_timeout_s
        )
        return [1] * len(items)

    async def _settle_error(
        self, message: MessageRecord, connector: str | None, error: SendError
    ) -> None:
        now = self._clock.now()
        if error.kind is SendErrorKind.PERMANENT:
            await self._queue.settle_failed(
                message.id, self.owner, status=MessageStatus.FAILED, reason=error.reason,
                error_code=error.provider_code, connector=connector, now=now,
            )  # fmt: skip
            return
        if error.kind is SendErrorKind.AMBIGUOUS and message.lane is Lane.OTP:
            # It may have reached the handset: a second code would confuse the user.
            await self._queue.settle_failed(
                message.id, self.owner, status=MessageStatus.UNKNOWN,
                reason=f"ambiguous submit, not resent: {error.reason}", connector=connector, now=now,
            )  # fmt: skip
            return
        if message.attempts >= self._settings.max_attempts:
            await self._queue.settle_failed(
                message.id, self.owner, status=MessageStatus.FAILED,
                reason=f"gave up after {message.attempts} attempts: {error.reason}",
                connector=connector, now=now,
            )  # fmt: skip
            return
        delay = error.retry_after_s or min(
            self._settings.retry_max_s,
            self._settings.retry_base_s * 2 ** (message.attempts - 1),
        )
        delay *= random.uniform(0.9, 1.1)  # noqa: S311 - jitter, not security
        await self._queue.settle_retry(
            message.id, self.owner, not_before=now + timedelta(seconds=delay),
            reason=error.reason, now=now,
        )  # fmt: skip


def _outbound(message: MessageRecord) -> OutboundMessage:
    return OutboundMessage(
        id=message.id,
        account_id=message.account_id,
        channel=message.channel,
        message_type=message.message_type,
        destination=message.destination,
        sender=message.sender,
        text=message.body,
        html=message.html,
        subject=message.subject,
        otp_code=message.otp_code,
        expires_at=message.expires_at,
        dlt_entity_id=message.dlt_entity_id,
        dlt_template_id=message.dlt_template_id,
        attempt=message.attempts,
    )
