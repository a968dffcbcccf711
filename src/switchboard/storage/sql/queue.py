"""The message table as a durable queue: claim with a lease, settle, receipts and fallback steps.

Accepting a message and enqueuing it is one insert in the caller's transaction. Workers claim
batches in lane order (OTP first) under a lease; PostgreSQL uses FOR UPDATE SKIP LOCKED so
several workers share the table, SQLite serialises claims with BEGIN IMMEDIATE. A lease that
expires before its message was handed to a driver puts it back in the queue; one that expires
after (the worker died mid-send) makes bulk messages retry and OTPs UNKNOWN, never resent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.channels.base import DeliveryReport, InboundMessage
from switchboard.domain import delivery
from switchboard.domain.messages import (
    Lane,
    MessageRecord,
    MessageStatus,
    can_transition,
    redact_code,
)
from switchboard.domain.verification import VerificationStatus
from switchboard.storage.sql.engines import Database
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


class StatusListener:
    """Called inside the transaction that changes a message's status (customer callbacks)."""

    async def on_status(
        self,
        connection: AsyncConnection,
        message: sa.Row[Any],
        status: MessageStatus,
        now: datetime,
        error_code: str | None,
    ) -> None:
        return None


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


class SqlMessageQueue:
    def __init__(self, database: Database, listener: StatusListener | None = None) -> None:
        self._db = database
        self._listener = listener or StatusListener()

    async def _lock_provider_ids(
        self, connection: AsyncConnection, connector: str, provider_ids: Sequence[str]
    ) -> None:
        """Serialise a receipt with the submit that stores its id.

        Without it, on PostgreSQL a receipt and its submit_sm_resp committed at the same moment
        could each miss the other: the receipt parked, the submit finding nothing parked.
        SQLite's single writer already serialises them.
        """
        if self._db.is_sqlite:
            return
        for provider_id in sorted(set(provider_ids)):
            digest = hashlib.sha256(f"{connector}|{provider_id}".encode()).digest()
            key = int.from_bytes(digest[:8], "big", signed=True)
            await connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))

    # -- accept ---------------------------------------------------------------------------

    async def enqueue(self, connection: AsyncConnection, batch: Sequence[MessageRecord]) -> None:
        """Insert messages (QUEUED or HELD) in the caller's transaction.

        Acceptance writes no event row: `created_at` is the first entry of a message's history,
        which keeps a million-row campaign at one insert per message.
        """
        if batch:
            await connection.execute(messages.insert(), [message_values(x) for x in batch])

    # -- claim ----------------------------------------------------------------------------

    async def claim(
        self, owner: str, now: datetime, limit: int, lease_s: float
    ) -> list[MessageRecord]:
        """Lease up to `limit` due messages, OTP lane first, oldest first within a lane."""
        due = (
            sa.select(m.id)
            .where(m.status == MessageStatus.QUEUED.value, m.not_before <= now)
            .order_by(m.lane, m.not_before)
            .limit(limit)
        )
        if not self._db.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        async with self._db.write() as connection:
            rows = (
                await connection.execute(
                    messages.update()
                    .where(m.id.in_(due.scalar_subquery()))
                    .values(
                        status=MessageStatus.SENDING.value,
                        lease_owner=owner,
                        lease_until=now + timedelta(seconds=lease_s),
                        attempts=m.attempts + 1,
                        dispatched_at=None,
                        updated_at=now,
                    )
                    .returning(*messages.c)
                )
            ).all()
        claimed = [message_record(row) for row in rows]
        claimed.sort(key=lambda x: (x.lane, x.not_before or x.created_at))
        return claimed

    async def mark_dispatched(self, owner: str, ids: Sequence[str], now: datetime) -> None:
        """Record that these messages are about to reach a driver (from here on: maybe sent)."""
        if not ids:
            return
        async with self._db.write() as connection:
            await connection.execute(
                messages.update()
                .where(m.id.in_(ids), m.lease_owner == owner)
                .values(dispatched_at=now)
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
        """The carrier took it: store its ids, redact the OTP, arm the next fallback step."""
        async with self._db.write() as connection:
            row = await self._leased(connection, message_id, owner)
            if row is None:
                return False
            await self._lock_provider_ids(connection, connector, provider_ids)
            await self._change_status(
                connection, row, MessageStatus.SUBMITTED, now, connector=connector,
                extra={
                    "connector": connector, "segments": segments, "submitted_at": now,
                    "lease_owner": None, "lease_until": None, "otp_code": None,
                    "body": redact_code(row.body, row.otp_code),
                },
            )  # fmt: skip
            if provider_ids:
                await connection.execute(
                    message_parts.insert(),
                    [
                        {"message_id": message_id, "part_no": n, "account_id": row.account_id,
                         "connector": connector, "provider_id": pid}
                        for n, pid in enumerate(provider_ids, start=1)
                    ],
                )  # fmt: skip
            if row.verification_id is not None:
                await self._arm_next_step(
                    connection, row, now + timedelta(seconds=next_step_delay_s)
                )
            parked = (
                await connection.execute(
                    parked_receipts.delete()
                    .where(
                        parked_receipts.c.connector == connector,
                        parked_receipts.c.provider_id.in_(list(provider_ids)),
                    )
                    .returning(*parked_receipts.c)
                )
            ).all()
            for receipt in sorted(parked, key=lambda r: r.id):
                await self._apply_report(
                    connection,
                    connector,
                    receipt.provider_id,
                    receipt.state,
                    receipt.error_code,
                    receipt.done_at,
                    now,
                )
        return True

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
        """Store a receipt; returns submit-to-final seconds when it settled its message."""
        async with self._db.write() as connection:
            await self._lock_provider_ids(connection, report.connector, [report.provider_id])
            found, latency = await self._apply_report(
                connection,
                report.connector,
                report.provider_id,
                report.state.value,
                report.error_code,
                report.done_at,
                now,
            )
            if not found:
                # It may have beaten its submit_sm_resp: keep it until the ids are known.
                await connection.execute(
                    parked_receipts.insert().values(
                        connector=report.connector,
                        provider_id=report.provider_id,
                        state=report.state.value,
                        error_code=report.error_code,
                        done_at=report.done_at,
                        received_at=now,
                    )
                )
        return latency

    async def rematch_parked(self, now: datetime, *, expire_after_s: float = 86_400) -> int:
        """Look parked receipts up again; drop those older than the correlation window."""
        matched = 0
        async with self._db.write() as connection:
            parked = (
                await connection.execute(
                    sa.select(parked_receipts).order_by(parked_receipts.c.id).limit(500)
                )
            ).all()
            for receipt in parked:
                found, _ = await self._apply_report(
                    connection, receipt.connector, receipt.provider_id, receipt.state,
                    receipt.error_code, receipt.done_at, now,
                )  # fmt: skip
                too_old = (now - receipt.received_at).total_seconds() > expire_after_s
                if found or too_old:
                    matched += int(found)
                    await connection.execute(
                        parked_receipts.delete().where(parked_receipts.c.id == receipt.id)
                    )
        return matched

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

    async def _apply_report(
        self,
        connection: AsyncConnection,
        connector: str,
        provider_id: str,
        state: str,
        error_code: str | None,
        done_at: datetime | None,
        now: datetime,
    ) -> tuple[bool, float | None]:
        """Apply a receipt to its message part: (whether the id was known, submit-to-final s)."""
        part = (
            await connection.execute(
                sa.select(message_parts).where(
                    message_parts.c.connector == connector,
                    message_parts.c.provider_id == provider_id,
                )
            )
        ).first()
        if part is None:
            return False, None
        # Lock the message first: the receipts of a multipart message's parts arrive together,
        # and each must see the others' part states to aggregate them (PostgreSQL).
        row = (
            await connection.execute(
                sa.select(messages).where(m.id == part.message_id).with_for_update()
            )
        ).one()
        part = (
            await connection.execute(
                sa.select(message_parts).where(
                    message_parts.c.message_id == part.message_id,
                    message_parts.c.part_no == part.part_no,
                )
            )
        ).one()
        if part.state is not None and delivery.is_final_state(part.state):
            return (
                True,
                None,
            )  # a duplicate, or a late intermediate state: final states never change
        if delivery.is_final_state(state) or state == "UNKNOWN" or part.state is None:
            await connection.execute(
                message_parts.update()
                .where(
                    message_parts.c.message_id == part.message_id,
                    message_parts.c.part_no == part.part_no,
                )
                .values(state=state, error_code=error_code, done_at=done_at or now)
            )
        states = (
            (
                await connection.execute(
                    sa.select(message_parts.c.state).where(
                        message_parts.c.message_id == part.message_id
                    )
                )
            )
            .scalars()
            .all()
        )
        single = len(states) == 1
        status = delivery.status_for_state(state) if single else delivery.aggregate_parts(states)
        if status is None or not can_transition(MessageStatus(row.status), status):
            await add_event(
                connection, row.id, row.account_id, state, now, connector=connector,
                detail=f"part {part.part_no}: {state}" + (f" err {error_code}" if error_code else ""),
            )  # fmt: skip
            return True, None
        latency = None
        if status.is_final and row.submitted_at is not None:
            latency = max(0.0, (now - row.submitted_at).total_seconds())
        await self._change_status(
            connection, row, status, now, connector=connector, error_code=error_code,
            detail=f"receipt {state}" + (f" err {error_code}" if error_code else ""),
            extra={"done_at": done_at or now, "error_code": error_code},
        )  # fmt: skip
        if status is MessageStatus.DELIVERED:
            await self._cancel_later_steps(connection, row, now)
        elif status in delivery.FAILED_FOR_FALLBACK:
            await self._advance_fallback(connection, row, now, failed=True)
        return True, latency

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
        async with self._db.read() as connection:
            rows = (
                await connection.execute(
                    sa.select(
                        message_events.c.status,
                        message_events.c.connector,
                        message_events.c.detail,
                        message_events.c.at,
                    )
                    .where(
                        message_events.c.message_id == message_id,
                        message_events.c.account_id == account_id,
                    )
                    .order_by(message_events.c.id)
                )
            ).all()
        return [dict(r._mapping) for r in rows]
