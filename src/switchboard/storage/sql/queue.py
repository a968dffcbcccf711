"""The message table as a durable queue: claim with a lease, settle, receipts and fallback steps.

Accepting a message and enqueuing it is one insert in the caller's transaction. Workers claim
batches in lane order (OTP first) under a lease; PostgreSQL uses FOR UPDATE SKIP LOCKED so
several workers share the table, SQLite serialises claims with BEGIN IMMEDIATE. The dispatcher
claims with `dispatched_at` set (claim_lanes): a lease that runs out (the worker died) makes bulk
messages retry and OTPs UNKNOWN, never resent; a leased message without it goes back to the
queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.channels.base import DeliveryReport, InboundMessage
from switchboard.domain import delivery
from switchboard.domain.messages import (
    Channel,
    Lane,
    MessageRecord,
    MessageStatus,
    MessageType,
    can_transition,
    redact_code,
)
from switchboard.domain.verification import VerificationStatus
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.locks import advisory_key, leased_first, lock_names
from switchboard.storage.sql.rows import message_record, message_values
from switchboard.storage.sql.tables import (
    inbound_messages,
    message_events,
    message_parts,
    messages,
    parked_receipts,
    verifications,
)

m = messages.c

REPORTS_PER_TRANSACTION = 256


@dataclass(frozen=True, slots=True)
class Submitted:
    """A message a driver submitted, waiting to be settled."""

    message: MessageRecord
    connector: str
    provider_ids: tuple[str, ...]
    segments: int


@dataclass(frozen=True, slots=True)
class _Receipt:
    connector: str
    provider_id: str
    state: str
    error_code: str | None
    done_at: datetime | None


def _claim_order(message: MessageRecord) -> tuple[int, datetime]:
    return message.lane, message.not_before or message.created_at


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class StatusListener:
    """Called inside the transaction that changes a message's status (customer callbacks), or
    that stores an inbound message (CRM reply forwarding)."""

    async def on_status(
        self,
        connection: AsyncConnection,
        message: sa.Row[Any],
        status: MessageStatus,
        now: datetime,
        error_code: str | None,
    ) -> None:
        return None

    async def on_inbound(self, connection: AsyncConnection, inbound: InboundMessage) -> None:
        return None


class StatusListeners(StatusListener):
    """Several listeners as one (billing, customer callbacks), called in the order given."""

    def __init__(self, *listeners: StatusListener) -> None:
        self._listeners = listeners

    async def on_status(
        self,
        connection: AsyncConnection,
        message: sa.Row[Any],
        status: MessageStatus,
        now: datetime,
        error_code: str | None,
    ) -> None:
        for listener in self._listeners:
            await listener.on_status(connection, message, status, now, error_code)

    async def on_inbound(self, connection: AsyncConnection, inbound: InboundMessage) -> None:
        for listener in self._listeners:
            await listener.on_inbound(connection, inbound)


async def add_event(
    connection: AsyncConnection,
    message_id: str,
    account_id: str,
    status: MessageStatus | str,
    now: datetime,
    *,
    connector: str | None = None,
    detail: str | None = None,
) -> None:
    await connection.execute(
        message_events.insert().values(
            message_id=message_id,
            account_id=account_id,
            status=str(status),
            connector=connector,
            detail=(detail or "")[:400] or None,
            at=now,
        )
    )


class DriverSql:
    """The hottest statements as driver-level SQL, in the database's placeholder style.

    An executemany through SQLAlchemy processes every parameter of every row in Python
    (timestamps twice: UtcDateTime, then SQLite's DATETIME formatting); these take tuples as
    the driver wants them, with timestamps from `stamp`.
    """

    def __init__(self, *, sqlite: bool) -> None:
        self.sqlite = sqlite

        def sql(text: str) -> str:
            return text if sqlite else text.replace("?", "%s")

        self.settle = sql(
            "UPDATE messages SET status = 'SUBMITTED', connector = ?, segments = ?, body = ?, "
            "submitted_at = ?, updated_at = ?, lease_owner = NULL, lease_until = NULL, "
            "otp_code = NULL WHERE id = ?"
        )
        self.insert_event = sql(
            "INSERT INTO message_events (message_id, account_id, status, connector, detail, at) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        self.insert_part = sql(
            "INSERT INTO message_parts (message_id, part_no, account_id, connector, provider_id) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        self.update_part = sql(
            "UPDATE message_parts SET state = ?, error_code = ?, done_at = ? "
            "WHERE message_id = ? AND part_no = ?"
        )
        self.update_status = sql(
            "UPDATE messages SET status = ?, error_code = ?, done_at = ?, updated_at = ? "
            "WHERE id = ?"
        )

    def stamp(self, value: datetime | None) -> Any:
        """A timestamp as UtcDateTime stores it: SQLite text in SQLAlchemy's DATETIME format
        (so that stored values compare as text), an aware datetime for PostgreSQL."""
        if value is None or not self.sqlite:
            return value
        if value.utcoffset():
            value = value.astimezone(UTC)
        return (
            f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
        )


class _ReceiptChanges:
    """What a batch of receipts changes, gathered in memory and written with executemany."""

    def __init__(self, now: datetime, current: dict[str, MessageStatus], sql: DriverSql) -> None:
        self.now = now
        self.current = current
        self.sql = sql
        self._now = sql.stamp(now)
        self.part_updates: dict[tuple[str, int], tuple[Any, ...]] = {}
        self.message_updates: dict[str, tuple[Any, ...]] = {}
        self.events: list[tuple[Any, ...]] = []
        self.changes: list[tuple[sa.Row[Any], MessageStatus, str | None]] = []

    def apply(
        self,
        receipt: _Receipt,
        part: sa.Row[Any],
        row: sa.Row[Any],
        part_states: dict[int, str | None],
    ) -> float | None:
        """Record one receipt; returns submit-to-final seconds when it settles the message."""
        existing = part_states.get(part.part_no)
        if existing is not None and delivery.is_final_state(existing):
            return None
        now = self.now
        stamp = self.sql.stamp
        err = f" err {receipt.error_code}" if receipt.error_code else ""
        if delivery.is_final_state(receipt.state) or receipt.state == "UNKNOWN" or existing is None:
            part_states[part.part_no] = receipt.state
            self.part_updates[(part.message_id, part.part_no)] = (
                receipt.state, receipt.error_code, stamp(receipt.done_at or now),
                part.message_id, part.part_no,
            )  # fmt: skip
        status = (
            delivery.status_for_state(receipt.state)
            if len(part_states) == 1
            else delivery.aggregate_parts(part_states.values())
        )
        if status is None or not can_transition(self.current[row.id], status):
            self.events.append(
                (row.id, row.account_id, receipt.state, receipt.connector,
                 f"part {part.part_no}: {receipt.state}{err}", self._now)
            )  # fmt: skip
            return None
        self.current[row.id] = status
        done_at = (receipt.done_at or now) if status.is_final else row.done_at
        self.message_updates[row.id] = (
            status.value,
            receipt.error_code,
            stamp(done_at),
            self._now,
            row.id,
        )
        self.events.append(
            (row.id, row.account_id, status.value, receipt.connector,
             f"receipt {receipt.state}{err}", self._now)
        )  # fmt: skip
        self.changes.append((row, status, receipt.error_code))
        if status.is_final and row.submitted_at is not None:
            return max(0.0, float((now - row.submitted_at).total_seconds()))
        return None

    async def write(self, connection: AsyncConnection) -> None:
        sql = self.sql
        if self.part_updates:
            await connection.exec_driver_sql(sql.update_part, list(self.part_updates.values()))
        if self.message_updates:
            await connection.exec_driver_sql(sql.update_status, list(self.message_updates.values()))
        if self.events:
            await connection.exec_driver_sql(sql.insert_event, self.events)


_RECORD_FIELDS = tuple(MessageRecord.__dataclass_fields__)
_RECORD_COLUMNS = tuple(messages.c[name] for name in _RECORD_FIELDS)
_CHANNELS = {channel.value: channel for channel in Channel}
_TYPES = {kind.value: kind for kind in MessageType}
_STATUSES = {status.value: status for status in MessageStatus}


def _record(row: sa.Row[Any]) -> MessageRecord:
    """A claimed row, selected as _RECORD_COLUMNS."""
    values = dict(zip(_RECORD_FIELDS, row, strict=True))
    values["channel"] = _CHANNELS[values["channel"]]
    values["message_type"] = _TYPES[values["message_type"]]
    values["status"] = _STATUSES[values["status"]]
    return MessageRecord(**values)


def _claim_statement(*, skip_locked: bool) -> sa.Update:
    """Lease up to b_limit due messages of the lanes b_lanes, lane order first, oldest first."""
    due = (
        sa.select(m.id)
        .where(
            m.status == MessageStatus.QUEUED.value,
            m.lane.in_(sa.bindparam("b_lanes", expanding=True)),
            m.not_before <= sa.bindparam("b_now"),
        )
        .order_by(m.lane, m.not_before)
        .limit(sa.bindparam("b_limit"))
    )
    return (
        messages.update()
        .where(leased_first(m.id, due) if skip_locked else m.id.in_(due.scalar_subquery()))
        .values(
            status=MessageStatus.SENDING.value,
            lease_owner=sa.bindparam("b_owner"),
            lease_until=sa.bindparam("b_until", type_=m.lease_until.type),
            attempts=m.attempts + 1,
            dispatched_at=sa.bindparam("b_dispatched", type_=m.dispatched_at.type),
            updated_at=sa.bindparam("b_now", type_=m.updated_at.type),
        )
        .returning(*_RECORD_COLUMNS)
    )


_CLAIM = {False: _claim_statement(skip_locked=False), True: _claim_statement(skip_locked=True)}
_LEASED_IDS = sa.select(m.id).where(
    m.id.in_(sa.bindparam("b_ids", expanding=True)),
    m.lease_owner == sa.bindparam("b_owner"),
    m.status == MessageStatus.SENDING.value,
)
_UNPARK = (
    parked_receipts.delete()
    .where(
        parked_receipts.c.connector == sa.bindparam("b_connector"),
        parked_receipts.c.provider_id.in_(sa.bindparam("b_ids", expanding=True)),
    )
    .returning(*parked_receipts.c)
)
_PARTS_BY_PROVIDER_ID: sa.Select[Any] = sa.select(
    message_parts.c.message_id,
    message_parts.c.part_no,
    message_parts.c.connector,
    message_parts.c.provider_id,
).where(message_parts.c.provider_id.in_(sa.bindparam("b_ids", expanding=True)))
# What receipts and the status listeners read of a message: not its text, nor the timestamps
# they do not need (each costs a conversion per row). client_ref marks CRM traffic (CleverTap).
_RECEIPT_TARGETS: sa.Select[Any] = (
    sa.select(
        *(
            messages.c[name]
            for name in (
                "id", "account_id", "numeric_id", "transaction_id", "campaign_id",
                "verification_id", "step", "channel", "message_type", "lane", "status",
                "destination", "country_code", "connector", "error_code", "segments", "charge",
                "charge_state", "submitted_at", "done_at", "client_ref",
            )
        )
    )
    .where(m.id.in_(sa.bindparam("b_ids", expanding=True)))
    .order_by(m.id)
    .with_for_update()
)  # fmt: skip
_PART_STATES = sa.select(
    message_parts.c.message_id, message_parts.c.part_no, message_parts.c.state
).where(message_parts.c.message_id.in_(sa.bindparam("b_ids", expanding=True)))
_OTP_LANES = [int(Lane.OTP)]
_BULK_LANES = [int(Lane.TRANSACTIONAL), int(Lane.PROMOTIONAL)]
_RELEASE = (
    messages.update()
    .where(
        m.id.in_(sa.bindparam("b_ids", expanding=True)),
        m.lease_owner == sa.bindparam("b_owner"),
        m.status == MessageStatus.SENDING.value,
    )
    .values(
        status=MessageStatus.QUEUED.value,
        lease_owner=None,
        lease_until=None,
        dispatched_at=None,
        attempts=m.attempts - 1,
        updated_at=sa.bindparam("b_now", type_=m.updated_at.type),
    )
)


class SqlMessageQueue:
    def __init__(self, database: Database, listener: StatusListener | None = None) -> None:
        self._db = database
        self._listener = listener or StatusListener()
        self._settles_first: Callable[[], Awaitable[None]] | None = None
        self._sql = DriverSql(sqlite=database.is_sqlite)
        self._bulk_lock = asyncio.Lock() if database.is_sqlite else None

    def _bulk_turn(self) -> contextlib.AbstractAsyncContextManager[None]:
        """On SQLite, one bulk write transaction (settles, receipts, bulk claims) at a time in
        the writer's queue: an OTP's accept or claim then waits behind one of them, not three."""
        return self._bulk_lock if self._bulk_lock is not None else contextlib.nullcontext()

    def settles_first(self, flushed: Callable[[], Awaitable[None]]) -> None:
        """Before storing receipts, await `flushed` (the settles submitted so far are stored).

        The SMSC answers a submit_sm and sends its receipt back to back; waiting for the
        settles in progress lets such a receipt find its message instead of being parked.
        """
        self._settles_first = flushed

    async def _lock_provider_ids(
        self, connection: AsyncConnection, connector: str, provider_ids: Sequence[str]
    ) -> None:
        """Serialise a receipt with the submit that stores its id.

        Without it, on PostgreSQL a receipt and its submit_sm_resp committed at the same moment
        could each miss the other: the receipt parked, the submit finding nothing parked.
        SQLite's single writer already serialises them.
        """
        if self._db.is_sqlite or not provider_ids:
            return
        await lock_names(connection, (advisory_key(connector, pid) for pid in provider_ids))

    # -- accept ---------------------------------------------------------------------------

    async def enqueue(self, connection: AsyncConnection, batch: Sequence[MessageRecord]) -> None:
        """Insert messages (QUEUED or HELD) in the caller's transaction.

        Acceptance writes no event row: `created_at` is the first entry of a message's history,
        which keeps a million-row campaign at one insert per message.
        """
        if batch:
            await connection.execute(messages.insert(), [message_values(x) for x in batch])

    # -- claim ----------------------------------------------------------------------------

    async def claim_lanes(
        self, owner: str, now: datetime, lease_s: float, *, otp_limit: int, bulk_limit: int
    ) -> tuple[list[MessageRecord], list[MessageRecord]]:
        """Lease due OTPs and due bulk messages in one transaction: (otps, bulk), oldest first.

        Both are marked dispatched at once: a crash from here on re-sends bulk messages
        (at-least-once) and makes OTPs UNKNOWN (never sent twice). Marking an OTP in a write
        transaction of its own, right before its send, would leave fewer UNKNOWN after a crash
        but make every OTP wait for the single SQLite writer once more behind bulk batches.
        """
        statement = _CLAIM[not self._db.is_sqlite]
        until = now + timedelta(seconds=lease_s)
        params = {"b_now": now, "b_owner": owner, "b_until": until, "b_dispatched": now}

        async def lease(connection: AsyncConnection, lanes: Any, limit: int) -> list[MessageRecord]:
            if limit <= 0:
                return []
            rows = await connection.execute(
                statement, {**params, "b_lanes": lanes, "b_limit": limit}
            )
            return [_record(row) for row in rows]

        turn = self._bulk_turn() if bulk_limit > 0 else contextlib.nullcontext()
        async with turn, self._db.write() as connection:
            otps = await lease(connection, _OTP_LANES, otp_limit)
            bulk = await lease(connection, _BULK_LANES, bulk_limit)
        order = _claim_order
        otps.sort(key=order)
        bulk.sort(key=order)
        return otps, bulk

    async def release_unsent(self, owner: str, ids: Sequence[str], now: datetime) -> None:
        """Give back claimed messages that never reached a driver (a worker stopping)."""
        async with self._db.write() as connection:
            for chunk in _chunks(ids, 500):
                await connection.execute(
                    _RELEASE, {"b_ids": list(chunk), "b_owner": owner, "b_now": now}
                )

    async def renew_leases(self, owner: str, now: datetime, lease_s: float) -> int:
        """Extend every lease this worker holds: a live worker never loses its messages."""
        async with self._db.write() as connection:
            renewed = await connection.execute(
                messages.update()
                .where(m.lease_owner == owner, m.status == MessageStatus.SENDING.value)
                .values(lease_until=now + timedelta(seconds=lease_s))
            )
        return int(renewed.rowcount or 0)

    async def reap_expired_leases(self, now: datetime) -> int:
        """Return the messages of dead workers to the queue; dispatched OTPs become UNKNOWN."""
        async with self._db.write() as connection:
            expired = (
                await connection.execute(
                    sa.select(messages).where(
                        m.status == MessageStatus.SENDING.value, m.lease_until < now
                    )
                )
            ).all()
            for row in expired:
                maybe_sent = row.dispatched_at is not None
                if maybe_sent and row.lane == Lane.OTP:
                    await self._change_status(
                        connection, row, MessageStatus.UNKNOWN, now,
                        detail="worker lost while submitting; OTPs are never resent",
                        extra={"otp_code": None, "body": redact_code(row.body, row.otp_code)},
                    )  # fmt: skip
                    await self._advance_fallback(connection, row, now, failed=True)
                else:
                    await connection.execute(
                        messages.update()
                        .where(m.id == row.id, m.status == MessageStatus.SENDING.value)
                        .values(
                            status=MessageStatus.QUEUED.value,
                            lease_owner=None,
                            lease_until=None,
                            not_before=now,
                            updated_at=now,
                        )
                    )
                    await add_event(
                        connection, row.id, row.account_id, MessageStatus.QUEUED, now,
                        detail="lease expired; requeued",
                    )  # fmt: skip
        return len(expired)

    # -- settle ---------------------------------------------------------------------------

    async def _leased(
        self, connection: AsyncConnection, message_id: str, owner: str
    ) -> sa.Row[Any] | None:
        return (
            await connection.execute(
                sa.select(messages).where(
                    m.id == message_id,
                    m.lease_owner == owner,
                    m.status == MessageStatus.SENDING.value,
                )
            )
        ).first()

    async def settle_submitted(
        self,
        message_id: str,
        owner: str,
        *,
        connector: str,
        provider_ids: Sequence[str],
        segments: int,
        now: datetime,
        next_step_delay_s: float,
    ) -> bool:
        """The carrier took one message (see settle_submitted_batch)."""
        row = await self.get_leased(message_id, owner)
        if row is None:
            return False
        settled = await self.settle_submitted_batch(
            owner,
            [Submitted(message=row, connector=connector, provider_ids=tuple(provider_ids),
                       segments=segments)],
            now=now,
            next_step_delay_s=next_step_delay_s,
        )  # fmt: skip
        return bool(settled)

    async def get_leased(self, message_id: str, owner: str) -> MessageRecord | None:
        async with self._db.read() as connection:
            row = await self._leased(connection, message_id, owner)
        return message_record(row) if row else None

    async def settle_submitted_batch(
        self,
        owner: str,
        items: Sequence[Submitted],
        *,
        now: datetime,
        next_step_delay_s: float,
    ) -> int:
        """Carriers took these messages: store their ids, redact OTPs, arm next fallback steps.

        One transaction for the whole batch; messages whose lease this worker lost are skipped.
        Receipts that were parked waiting for these ids are applied here. Returns how many
        messages were settled.
        """
        if not items:
            return 0
        async with self._bulk_turn(), self._db.write() as connection:
            owned = {
                message_id
                for chunk in _chunks([item.message.id for item in items], 500)
                for (message_id,) in await connection.execute(
                    _LEASED_IDS, {"b_ids": list(chunk), "b_owner": owner}
                )
            }
            settled = [item for item in items if item.message.id in owned]
            if not settled:
                return 0
            by_connector: dict[str, list[str]] = {}
            for item in settled:
                by_connector.setdefault(item.connector, []).extend(item.provider_ids)
            for connector, provider_ids in by_connector.items():
                await self._lock_provider_ids(connection, connector, provider_ids)
            sql = self._sql
            stamp = sql.stamp(now)
            await connection.exec_driver_sql(
                sql.settle,
                [
                    (item.connector, item.segments,
                     redact_code(item.message.body, item.message.otp_code), stamp, stamp,
                     item.message.id)
                    for item in settled
                ],
            )  # fmt: skip
            await connection.exec_driver_sql(
                sql.insert_event,
                [
                    (item.message.id, item.message.account_id, MessageStatus.SUBMITTED.value,
                     item.connector, None, stamp)
                    for item in settled
                ],
            )  # fmt: skip
            parts = [
                (item.message.id, n, item.message.account_id, item.connector, pid)
                for item in settled
                for n, pid in enumerate(item.provider_ids, start=1)
            ]
            if parts:
                await connection.exec_driver_sql(sql.insert_part, parts)
            for item in settled:
                # The record claimed under this lease stands for the row: a leased row changes
                # only through its lease owner. Listeners read attributes, not Row methods.
                row = cast(sa.Row[Any], item.message)
                await self._listener.on_status(connection, row, MessageStatus.SUBMITTED, now, None)
                if row.verification_id is not None:
                    await self._arm_next_step(
                        connection, row, now + timedelta(seconds=next_step_delay_s)
                    )
            parked: list[sa.Row[Any]] = []
            for connector, provider_ids in by_connector.items():
                for chunk in _chunks(provider_ids, 500):
                    parked += (
                        await connection.execute(
                            _UNPARK, {"b_connector": connector, "b_ids": list(chunk)}
                        )
                    ).all()
            if parked:
                await self._apply_reports(
                    connection,
                    [
                        _Receipt(r.connector, r.provider_id, r.state, r.error_code, r.done_at)
                        for r in sorted(parked, key=lambda r: r.id)
                    ],
                    now,
                )
        return len(settled)

    async def settle_retry(
        self, message_id: str, owner: str, *, not_before: datetime, reason: str, now: datetime
    ) -> bool:
        async with self._db.write() as connection:
            row = await self._leased(connection, message_id, owner)
            if row is None:
                return False
            await connection.execute(
                messages.update()
                .where(m.id == message_id)
                .values(
                    status=MessageStatus.QUEUED.value,
                    lease_owner=None,
                    lease_until=None,
                    dispatched_at=None,
                    not_before=not_before,
                    error_reason=reason[:400],
                    updated_at=now,
                )
            )
            await add_event(
                connection, message_id, row.account_id, MessageStatus.QUEUED, now,
                detail=f"retry at {not_before.isoformat()}: {reason}",
            )  # fmt: skip
        return True

    async def settle_failed(
        self,
        message_id: str,
        owner: str,
        *,
        status: MessageStatus,
        reason: str,
        now: datetime,
        error_code: str | None = None,
        connector: str | None = None,
    ) -> bool:
        """End a leased message without a carrier id: FAILED, REJECTED, UNKNOWN or CANCELLED."""
        async with self._db.write() as connection:
            row = await self._leased(connection, message_id, owner)
            if row is None:
                return False
            await self._change_status(
                connection, row, status, now, connector=connector, detail=reason,
                error_code=error_code,
                extra={
                    "lease_owner": None, "lease_until": None, "otp_code": None,
                    "body": redact_code(row.body, row.otp_code), "connector": connector,
                    "error_reason": reason[:400],
                },
            )  # fmt: skip
            await self._advance_fallback(
                connection, row, now, failed=status is not MessageStatus.CANCELLED
            )
        return True

    # -- receipts -------------------------------------------------------------------------

    async def record_report(self, report: DeliveryReport, now: datetime) -> float | None:
        """Store one receipt; returns submit-to-final seconds when it settled its message."""
        [latency] = await self.record_reports([report], now)
        return latency

    async def record_reports(
        self, reports: Sequence[DeliveryReport], now: datetime
    ) -> list[float | None]:
        """Store receipts; a receipt whose id is not known yet is parked (it may have beaten
        its submit_sm_resp). Returns, per receipt, submit-to-final seconds when it settled its
        message.

        At most REPORTS_PER_TRANSACTION receipts per transaction: on SQLite an OTP's accept and
        claim wait for the one writer, so no transaction may run long.
        """
        if not reports:
            return []
        receipts = [
            _Receipt(r.connector, r.provider_id, r.state.value, r.error_code, r.done_at)
            for r in reports
        ]
        if self._settles_first is not None:
            await self._settles_first()
        latencies: list[float | None] = []
        for start in range(0, len(receipts), REPORTS_PER_TRANSACTION):
            chunk = receipts[start : start + REPORTS_PER_TRANSACTION]
            latencies += await self._record_receipts(chunk, now)
        return latencies

    async def _record_receipts(
        self, receipts: Sequence[_Receipt], now: datetime
    ) -> list[float | None]:
        async with self._bulk_turn(), self._db.write() as connection:
            by_connector: dict[str, list[str]] = {}
            for receipt in receipts:
                by_connector.setdefault(receipt.connector, []).append(receipt.provider_id)
            for connector, provider_ids in by_connector.items():
                await self._lock_provider_ids(connection, connector, provider_ids)
            outcomes = await self._apply_reports(connection, receipts, now)
            unmatched = [
                {"connector": r.connector, "provider_id": r.provider_id, "state": r.state,
                 "error_code": r.error_code, "done_at": r.done_at, "received_at": now}
                for r, (found, _) in zip(receipts, outcomes, strict=True)
                if not found
            ]  # fmt: skip
            if unmatched:
                await connection.execute(parked_receipts.insert(), unmatched)
        return [latency for _, latency in outcomes]

    async def rematch_parked(self, now: datetime, *, expire_after_s: float = 86_400) -> int:
        """Look parked receipts up again; drop those older than the correlation window."""
        async with self._db.write() as connection:
            parked = (
                await connection.execute(
                    sa.select(parked_receipts).order_by(parked_receipts.c.id).limit(500)
                )
            ).all()
            if not parked:
                return 0
            outcomes = await self._apply_reports(
                connection,
                [_Receipt(r.connector, r.provider_id, r.state, r.error_code, r.done_at)
                 for r in parked],
                now,
            )  # fmt: skip
            done = [
                r.id
                for r, (found, _) in zip(parked, outcomes, strict=True)
                if found or (now - r.received_at).total_seconds() > expire_after_s
            ]
            if done:
                await connection.execute(
                    parked_receipts.delete().where(parked_receipts.c.id.in_(done))
                )
        return sum(1 for found, _ in outcomes if found)

    async def record_inbound(self, inbound: InboundMessage) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                inbound_messages.insert().values(
                    connector=inbound.connector,
                    channel=inbound.channel.value,
                    source=inbound.source,
                    destination=inbound.destination,
                    text=inbound.text,
                    received_at=inbound.received_at,
                )
            )
            await self._listener.on_inbound(connection, inbound)

    async def _load_receipt_targets(
        self, connection: AsyncConnection, receipts: Sequence[_Receipt]
    ) -> tuple[
        dict[tuple[str, str], sa.Row[Any]], dict[str, sa.Row[Any]], dict[str, dict[int, str | None]]
    ]:
        """The parts the receipts name, their messages (locked, in id order) and part states."""
        provider_ids = sorted({r.provider_id for r in receipts})
        known: dict[tuple[str, str], sa.Row[Any]] = {}
        for chunk in _chunks(provider_ids, 500):
            for found in await connection.execute(_PARTS_BY_PROVIDER_ID, {"b_ids": list(chunk)}):
                known[(found.connector, found.provider_id)] = found
        rows: dict[str, sa.Row[Any]] = {}
        states: dict[str, dict[int, str | None]] = {}
        # Lock the messages first: the receipts of a multipart message's parts arrive
        # together, and each must see the others' part states (PostgreSQL).
        for chunk in _chunks(sorted({p.message_id for p in known.values()}), 500):
            ids = {"b_ids": list(chunk)}
            rows.update({row.id: row for row in await connection.execute(_RECEIPT_TARGETS, ids)})
            for message_id, part_no, state in await connection.execute(_PART_STATES, ids):
                states.setdefault(message_id, {})[part_no] = state
        return known, rows, states

    async def _apply_reports(
        self, connection: AsyncConnection, receipts: Sequence[_Receipt], now: datetime
    ) -> list[tuple[bool, float | None]]:
        """Apply receipts to their message parts, in order, in the caller's transaction.

        Per receipt: (whether its id was known, submit-to-final seconds if it settled the
        message). A final part state never changes, so duplicates and late intermediate states
        only add history.
        """
        known, rows, states = await self._load_receipt_targets(connection, receipts)
        batch = _ReceiptChanges(
            now, {i: MessageStatus(r.status) for i, r in rows.items()}, self._sql
        )
        outcomes: list[tuple[bool, float | None]] = []
        for receipt in receipts:
            part = known.get((receipt.connector, receipt.provider_id))
            if part is None:
                outcomes.append((False, None))
                continue
            outcomes.append(
                (True, batch.apply(receipt, part, rows[part.message_id], states[part.message_id]))
            )
        await batch.write(connection)
        for row, status, error_code in batch.changes:
            await self._listener.on_status(connection, row, status, now, error_code)
            if status is MessageStatus.DELIVERED:
                await self._cancel_later_steps(connection, row, now)
            elif status in delivery.FAILED_FOR_FALLBACK:
                await self._advance_fallback(connection, row, now, failed=True)
        return outcomes

    # -- status changes and fallback --------------------------------------------------------

    async def _change_status(
        self,
        connection: AsyncConnection,
        row: sa.Row[Any],
        status: MessageStatus,
        now: datetime,
        *,
        connector: str | None = None,
        detail: str | None = None,
        error_code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        values: dict[str, Any] = {**(extra or {}), "status": status.value, "updated_at": now}
        if status.is_final and "done_at" not in values:
            values["done_at"] = now
        await connection.execute(messages.update().where(m.id == row.id).values(**values))
        await add_event(
            connection, row.id, row.account_id, status, now, connector=connector, detail=detail
        )
        await self._listener.on_status(connection, row, status, now, error_code)

    async def _arm_next_step(
        self, connection: AsyncConnection, row: sa.Row[Any], due: datetime
    ) -> None:
        # The next channel goes out if this one has not delivered by `due`.
        await connection.execute(
            messages.update()
            .where(
                m.verification_id == row.verification_id,
                m.step == row.step + 1,
                m.status == MessageStatus.HELD.value,
            )
            .values(status=MessageStatus.QUEUED.value, not_before=due, updated_at=due)
        )

    async def _advance_fallback(
        self, connection: AsyncConnection, row: sa.Row[Any], now: datetime, *, failed: bool
    ) -> None:
        if row.verification_id is None or not failed:
            return
        pending = await connection.scalar(
            sa.select(sa.func.count()).where(
                verifications.c.id == row.verification_id,
                verifications.c.status == VerificationStatus.PENDING.value,
                verifications.c.expires_at > now,
            )
        )
        if not pending:
            return
        released = (
            await connection.execute(
                messages.update()
                .where(
                    m.verification_id == row.verification_id,
                    m.step == row.step + 1,
                    m.status.in_([MessageStatus.HELD.value, MessageStatus.QUEUED.value]),
                )
                .values(status=MessageStatus.QUEUED.value, not_before=now, updated_at=now)
                .returning(m.id, m.account_id, m.channel)
            )
        ).all()
        for nxt in released:
            await add_event(
                connection, nxt.id, nxt.account_id, MessageStatus.QUEUED, now,
                detail=f"fallback after {row.channel} failed",
            )  # fmt: skip

    async def _cancel_later_steps(
        self, connection: AsyncConnection, row: sa.Row[Any], now: datetime
    ) -> None:
        if row.verification_id is None:
            return
        cancelled = (
            await connection.execute(
                messages.update()
                .where(
                    m.verification_id == row.verification_id,
                    m.step > row.step,
                    m.status.in_([MessageStatus.HELD.value, MessageStatus.QUEUED.value]),
                )
                .values(
                    status=MessageStatus.CANCELLED.value, otp_code=None, done_at=now, updated_at=now
                )
                .returning(m.id, m.account_id)
            )
        ).all()
        for nxt in cancelled:
            await add_event(
                connection, nxt.id, nxt.account_id, MessageStatus.CANCELLED, now,
                detail=f"not needed: {row.channel} delivered",
            )  # fmt: skip

    # -- queries --------------------------------------------------------------------------

    async def queue_depth(self) -> dict[str, int]:
        async with self._db.read() as connection:
            rows = (
                await connection.execute(
                    sa.select(m.lane, m.status, sa.func.count())
                    .where(m.status.in_([MessageStatus.QUEUED.value, MessageStatus.SENDING.value]))
                    .group_by(m.lane, m.status)
                )
            ).all()
        return {
            f"{Lane(lane).name.lower()}_{status.lower()}": count for lane, status, count in rows
        }

    async def get_message(self, account_id: str, message_id: str) -> MessageRecord | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(messages).where(m.id == message_id, m.account_id == account_id)
                )
            ).first()
        return message_record(row) if row else None

    async def message_events(self, account_id: str, message_id: str) -> list[dict[str, Any]]:
        return await read_message_events(self._db, account_id, message_id)


_MESSAGE_EVENTS = (
    sa.select(
        message_events.c.status, message_events.c.connector, message_events.c.detail,
        message_events.c.at,
    )
    .where(
        message_events.c.message_id == sa.bindparam("b_message_id"),
        message_events.c.account_id == sa.bindparam("b_account_id"),
    )
    .order_by(message_events.c.id)
)  # fmt: skip


async def read_message_events(
    database: Database, account_id: str, message_id: str
) -> list[dict[str, Any]]:
    """A message's status history, oldest first (status, connector, detail, at); [] for a
    message that is not the account's."""
    async with database.read() as connection:
        rows = await connection.execute(
            _MESSAGE_EVENTS, {"b_message_id": message_id, "b_account_id": account_id}
        )
        return [dict(r._mapping) for r in rows]
