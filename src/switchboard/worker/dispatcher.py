"""Claim → route → send → settle: drains the message queue into the channel drivers."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import partial

from switchboard.channels.base import (
    ChannelDriver,
    OutboundMessage,
    SendError,
    SendErrorKind,
)
from switchboard.clock import Clock
from switchboard.config import WorkerSettings
from switchboard.domain.messages import Lane, MessageRecord, MessageStatus
from switchboard.domain.routing import SANDBOX, Route, choose_connectors
from switchboard.metrics import Metrics
from switchboard.observability import get_logger
from switchboard.storage.sql.queue import SqlMessageQueue, Submitted
from switchboard.worker.batching import GroupCommit

log = get_logger("switchboard.worker")


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
        max_in_flight: int = 200,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._settler: GroupCommit[Submitted, int] = GroupCommit(self._settle_submitted)
        self._marker: GroupCommit[str, int] = GroupCommit(self._mark_dispatched)
        self._queue = queue
        self._drivers = drivers
        self._routes = routes
        self._clock = clock
        self._settings = settings
        self._test_numbers = test_numbers
        self._step_timeout_s = fallback_step_timeout_s
        self.owner = f"{socket.gethostname()}:{secrets.token_hex(4)}"
        self._bulk_in_flight = 0
        self._max_in_flight = max_in_flight
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        """New work was committed: claim now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        # Renew well before expiry; reap at the same pace (a dead worker's leases run out).
        renew_every = self._settings.lease_s / 3
        last_renew = loop_time = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                loop_time = loop.time()
                if loop_time - last_renew >= renew_every:
                    last_renew = loop_time
                    if self._in_flight:
                        await self._queue.renew_leases(
                            self.owner, self._clock.now(), self._settings.lease_s
                        )
                    await self._queue.reap_expired_leases(self._clock.now())
                claimed = await self._claim()
            except Exception:  # a database hiccup must not kill the worker
                log.exception("dispatcher loop error")
                claimed = 0
            if claimed == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval_s)

    async def stop(self, grace_s: float) -> None:
        """Stop claiming and wait (bounded) for in-flight sends to settle."""
        self._stopping.set()
        self._wake.set()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=grace_s)

    async def _claim(self) -> int:
        """Claim what can be sent soon: OTPs up to the in-flight limit, bulk up to its own cap.

        Lane order alone is not enough: bulk messages claimed earlier wait inside the drivers
        (window, TPS) ahead of a new OTP, so the number of bulk messages in flight is capped.
        """
        free = self._max_in_flight - len(self._in_flight)
        if free <= 0:
            return 0
        now = self._clock.now()
        batch = await self._queue.claim(
            self.owner, now, min(free, self._settings.batch_size), self._settings.lease_s,
            lanes=(Lane.OTP,),
        )  # fmt: skip
        free_bulk = min(free - len(batch), self._settings.bulk_in_flight - self._bulk_in_flight)
        if free_bulk > 0:
            bulk = await self._queue.claim(
                self.owner, now, min(free_bulk, self._settings.batch_size),
                self._settings.lease_s, lanes=(Lane.TRANSACTIONAL, Lane.PROMOTIONAL),
            )  # fmt: skip
            # Bulk is marked per batch (a crash re-sends it: at-least-once); an OTP right before
            # its own send, so a crash leaves as few as possible UNKNOWN and sends none twice.
            await self._queue.mark_dispatched(self.owner, [x.id for x in bulk], now)
            batch += bulk
        for message in batch:
            is_bulk = message.lane is not Lane.OTP
            self._bulk_in_flight += is_bulk
            task = asyncio.create_task(self._send_guarded(message))
            self._in_flight.add(task)
            task.add_done_callback(partial(self._finished, is_bulk=is_bulk))
        return len(batch)

    def _finished(self, task: asyncio.Task[None], *, is_bulk: bool) -> None:
        self._in_flight.discard(task)
        self._bulk_in_flight -= is_bulk
        self._wake.set()  # capacity freed: claim more now rather than at the next poll

    async def _send_guarded(self, message: MessageRecord) -> None:
        try:
            await self.send(message)
        except Exception:  # the lease brings the message back if we could not settle
            log.exception("send failed unexpectedly", message_id=message.id)

    def _candidates(self, message: MessageRecord) -> tuple[str, ...]:
        if message.destination in self._test_numbers:
            return (SANDBOX,)  # test numbers never reach a carrier
        return choose_connectors(
            self._routes, message.channel, message.destination, message.message_type
        )

    async def send(self, message: MessageRecord) -> None:
        now = self._clock.now()
        if message.expires_at is not None and now >= message.expires_at:
            await self._queue.settle_failed(
                message.id, self.owner, status=MessageStatus.CANCELLED,
                reason="validity ended before it could be sent", now=now,
            )  # fmt: skip
            return
        names = self._candidates(message)
        if not names:
            await self._queue.settle_failed(
                message.id, self.owner, status=MessageStatus.FAILED,
                reason=f"no route for {message.channel} to {message.destination[:4]}…", now=now,
            )  # fmt: skip
            return
        outbound = _outbound(message)
        if message.lane is Lane.OTP:
            await self._marker.submit(message.id)
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
                await self._settle_error(message, name, error)
                return
            self._metrics.submits.labels(name, "submitted").inc()
            await self._settler.submit(
                Submitted(message=message, connector=name, provider_ids=result.provider_ids,
                          segments=result.segments)
            )  # fmt: skip
            return
        await self._settle_error(
            message,
            None,
            last_error or SendError(SendErrorKind.TRANSIENT, "no connector can carry this channel"),
        )

    async def _mark_dispatched(self, ids: list[str]) -> list[int]:
        await self._queue.mark_dispatched(self.owner, ids, self._clock.now())
        return [1] * len(ids)

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
