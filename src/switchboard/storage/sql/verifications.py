"""SQL persistence of verifications: atomic start with limits, and single-use code checks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.domain.limits import SendHistory, SendLimits, check_send_limits
from switchboard.domain.messages import MessageRecord, MessageStatus
from switchboard.domain.verification import CheckResult, VerificationRecord, VerificationStatus
from switchboard.storage.sql.charges import MessageCharges
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.rows import message_record, message_values, verification_record
from switchboard.storage.sql.tables import (
    UtcDateTime,
    message_events,
    messages,
    verification_checks,
    verification_days,
    verifications,
)

_UNSENT = (MessageStatus.HELD.value, MessageStatus.QUEUED.value)
_CANCEL_UNSENT = (
    messages.update()
    .where(
        messages.c.verification_id == sa.bindparam("p_verification"),
        messages.c.status.in_(_UNSENT),
    )
    .values(
        status=MessageStatus.CANCELLED.value,
        otp_code=None,
        done_at=sa.bindparam("p_now"),
        updated_at=sa.bindparam("p_now"),
    )
    .returning(messages.c.id, messages.c.account_id)
)

# The send path's statements, built once: building SQLAlchemy constructs per request cost more
# CPU than running them (bench/RESULTS.md).
_v = verifications.c
_PENDING = VerificationStatus.PENDING.value
_HISTORY = sa.select(
    # One pass over the number's last day: a pending code is at most 600 s old.
    sa.type_coerce(
        sa.func.max(
            sa.case(
                (sa.and_(_v.status == _PENDING, _v.expires_at > sa.bindparam("now")), _v.created_at)
            )
        ),
        UtcDateTime(),
    ).label("last_pending"),
    sa.func.count(sa.case((_v.created_at > sa.bindparam("ten_min_ago"), 1))).label("in_10_min"),
    sa.func.count().label("in_day"),
    sa.func.count(sa.case((_v.status == _PENDING, 1))).label("pending"),
    sa.select(sa.func.coalesce(sa.func.sum(verification_days.c.sends), 0))
    .where(
        verification_days.c.account_id == sa.bindparam("account_id"),
        verification_days.c.day == sa.bindparam("day"),
    )
    .scalar_subquery()
    .label("today"),
).where(
    _v.account_id == sa.bindparam("account_id"),
    _v.destination == sa.bindparam("destination"),
    _v.created_at > sa.bindparam("day_ago"),
)
_END_PENDING = (
    verifications.update()
    .where(
        _v.account_id == sa.bindparam("p_account"),
        _v.destination == sa.bindparam("p_destination"),
        _v.status == _PENDING,
    )
    .values(status=VerificationStatus.CANCELLED.value, ended_at=sa.bindparam("p_now"))
    .returning(_v.id)
)
_INSERT_VERIFICATION = verifications.insert()
_INSERT_CHECK = verification_checks.insert()
_SELECT = sa.select(verifications).where(_v.id == sa.bindparam("p_id"))
_SELECT_OWN = _SELECT.where(_v.account_id == sa.bindparam("p_account"))
# An attempt counts only while the code is live; the row after it, or none when another
# request won the race.
_LIVE = sa.and_(
    _v.id == sa.bindparam("p_id"),
    _v.status == _PENDING,
    _v.expires_at > sa.bindparam("p_now"),
    _v.attempts < _v.max_attempts,
)
_RIGHT_CODE = (
    verifications.update()
    .where(_LIVE)
    .values(
        attempts=_v.attempts + 1,
        status=VerificationStatus.VERIFIED.value,
        ended_at=sa.bindparam("p_now"),
    )
    .returning(*verifications.c)
)
_EXHAUSTED = _v.attempts + 1 >= _v.max_attempts
_WRONG_CODE = (
    verifications.update()
    .where(_LIVE)
    .values(
        attempts=_v.attempts + 1,
        status=sa.case((_EXHAUSTED, VerificationStatus.FAILED.value), else_=_v.status),
        ended_at=sa.case((_EXHAUSTED, sa.bindparam("p_now")), else_=_v.ended_at),
    )
    .returning(*verifications.c)
)


_DAY_SHARDS = 16


def _bump_day(is_sqlite: bool) -> sa.Executable:
    days = verification_days
    values = {
        "account_id": sa.bindparam("p_account"),
        "day": sa.bindparam("p_day"),
        "shard": sa.bindparam("p_shard"),
        "sends": 1,
    }
    keys = [days.c.account_id, days.c.day, days.c.shard]
    bump = {"sends": days.c.sends + 1}
    if is_sqlite:
        return (
            sqlite.insert(days).values(values).on_conflict_do_update(index_elements=keys, set_=bump)
        )
    return (
        postgresql.insert(days).values(values).on_conflict_do_update(index_elements=keys, set_=bump)
    )


async def cancel_unsent_messages(
    connection: AsyncConnection, verification_id: int, now: datetime, reason: str
) -> list[str]:
    """An ended verification's messages that no carrier has yet are never sent; their ids."""
    cancelled = (
        await connection.execute(_CANCEL_UNSENT, {"p_verification": verification_id, "p_now": now})
    ).all()
    if cancelled:
        await connection.execute(
            message_events.insert(),
            [
                {"message_id": row.id, "account_id": row.account_id,
                 "status": MessageStatus.CANCELLED.value, "detail": reason, "at": now}
                for row in cancelled
            ],
        )  # fmt: skip
    return [row.id for row in cancelled]


class VerificationListener:
    """Called inside the transaction that ends a verification: VERIFIED, FAILED or EXPIRED
    (customer callbacks)."""

    async def on_verification_ended(
        self, connection: AsyncConnection, record: VerificationRecord, now: datetime
    ) -> None:
        return None


class SqlVerificationStore:
    def __init__(
        self,
        database: Database,
        listener: VerificationListener | None = None,
        *,
        charges: MessageCharges | None = None,
    ) -> None:
        self._db = database
        self._listener = listener or VerificationListener()
        self._charges = charges or MessageCharges()
        self._bump_day = _bump_day(database.is_sqlite)

    async def _cancel_unsent(
        self, connection: AsyncConnection, verification_id: int, now: datetime, reason: str
    ) -> None:
        cancelled = await cancel_unsent_messages(connection, verification_id, now, reason)
        if cancelled:
            await self._charges.on_cancelled(connection, now, message_ids=cancelled, reason=reason)

    async def _lock_destination(
        self, connection: AsyncConnection, account_id: str, destination: str
    ) -> None:
        # Serialise concurrent sends to one number so the limits hold (SQLite's single writer
        # already does this).
        if self._db.is_sqlite:
            return
        digest = hashlib.sha256(f"{account_id}|{destination}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        await connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))

    async def _history(
        self, connection: AsyncConnection, account_id: str, destination: str, now: datetime
    ) -> tuple[SendHistory, int]:
        """The number's sends in the last day and how many of them are still pending."""
        row = (
            await connection.execute(
                _HISTORY,
                {
                    "account_id": account_id,
                    "destination": destination,
                    "now": now,
                    "ten_min_ago": now - timedelta(minutes=10),
                    "day_ago": now - timedelta(days=1),
                    "day": now.strftime("%Y-%m-%d"),
                },
            )
        ).one()
        history = SendHistory(
            last_pending_created_at=row.last_pending,
            sends_last_10_min=int(row.in_10_min or 0),
            sends_last_day=int(row.in_day or 0),
            # Read without a lock: on PostgreSQL, sends of one account racing each other may
            # pass the quota by as many as are in flight (as counting rows did).
            account_sends_today=int(row.today or 0),
        )
        return history, int(row.pending or 0)

    async def _count_send(
        self, connection: AsyncConnection, verification: VerificationRecord, now: datetime
    ) -> None:
        """Add the send to the account's count for today. Last in the transaction: on
        PostgreSQL the bumped row stays locked until the commit."""
        await connection.execute(
            self._bump_day,
            {
                "p_account": verification.account_id,
                "p_day": now.strftime("%Y-%m-%d"),
                "p_shard": verification.id % _DAY_SHARDS,
            },
        )

    async def start_verification(
        self,
        verification: VerificationRecord,
        code_length: int,
        outbound: Sequence[MessageRecord],
        limits: SendLimits | None,
        now: datetime,
    ) -> None:
        """Check the limits, end the number's pending verification, store the new one and its
        messages: one transaction, so nothing is queued unless everything is."""
        async with self._db.write() as connection:
            await self._lock_destination(
                connection, verification.account_id, verification.destination
            )
            pending = 1  # unknown without the history: end any pending one
            if limits is not None:
                history, pending = await self._history(
                    connection, verification.account_id, verification.destination, now
                )
                check_send_limits(history, limits, now)
            if pending:
                previous = (
                    (
                        await connection.execute(
                            _END_PENDING,
                            {
                                "p_account": verification.account_id,
                                "p_destination": verification.destination,
                                "p_now": now,
                            },
                        )
                    )
                    .scalars()
                    .all()
                )
                for previous_id in previous:
                    await self._cancel_unsent(connection, previous_id, now, "replaced by a resend")
            await connection.execute(
                _INSERT_VERIFICATION,
                {
                    "id": verification.id,
                    "account_id": verification.account_id,
                    "transaction_id": verification.transaction_id,
                    "channel": verification.channel.value,
                    "country_code": verification.country_code,
                    "mobile_number": verification.mobile_number,
                    "destination": verification.destination,
                    "code_hash": verification.code_hash,
                    "code_length": code_length,
                    "status": verification.status.value,
                    "attempts": 0,
                    "max_attempts": verification.max_attempts,
                    "timeout_s": verification.timeout_s,
                    "fallback": [c.value for c in verification.fallback],
                    "is_test": verification.is_test,
                    "created_at": verification.created_at,
                    "expires_at": verification.expires_at,
                    "ended_at": None,
                },
            )
            outbound = await self._charges.on_accept(connection, outbound)
            await connection.execute(messages.insert(), [message_values(m) for m in outbound])
            if limits is not None:
                await self._count_send(connection, verification, now)

    async def get_verification(
        self, account_id: str, verification_id: int
    ) -> VerificationRecord | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(verifications).where(
                        verifications.c.id == verification_id,
                        verifications.c.account_id == account_id,
                    )
                )
            ).first()
        return verification_record(row) if row else None

    async def check_code(
        self,
        account_id: str,
        verification_id: int,
        matches: Callable[[VerificationRecord], bool],
        now: datetime,
    ) -> tuple[CheckResult, VerificationRecord | None]:
        """One attempt, counted before the compare; the first right code wins (single use)."""
        v = verifications.c
        async with self._db.write() as connection:
            row = (
                await connection.execute(
                    _SELECT_OWN, {"p_id": verification_id, "p_account": account_id}
                )
            ).first()
            if row is None:
                return CheckResult.NOT_FOUND, None
            record = verification_record(row)
            result = _final_result(record, now)
            if result is None:
                is_match = matches(record)
                attempt = _RIGHT_CODE if is_match else _WRONG_CODE
                fresh = (
                    await connection.execute(attempt, {"p_id": verification_id, "p_now": now})
                ).first()
                if fresh is None:  # lost a race: read what won
                    fresh = (await connection.execute(_SELECT, {"p_id": verification_id})).one()
                    record = verification_record(fresh)
                    result = _final_result(record, now) or CheckResult.FAILED
                else:
                    record = verification_record(fresh)
                    result = CheckResult.VERIFIED if is_match else CheckResult.WRONG_CODE
                    if record.status is not VerificationStatus.PENDING:
                        await self._listener.on_verification_ended(connection, record, now)
                if record.status is not VerificationStatus.PENDING:
                    await self._cancel_unsent(
                        connection,
                        verification_id,
                        now,
                        f"verification {record.status.value.lower()}",
                    )
            elif result is CheckResult.EXPIRED and record.status is VerificationStatus.PENDING:
                expired = await connection.execute(
                    verifications.update()
                    .where(v.id == verification_id, v.status == VerificationStatus.PENDING.value)
                    .values(status=VerificationStatus.EXPIRED.value, ended_at=record.expires_at)
                )
                if expired.rowcount == 1:
                    record = replace(
                        record, status=VerificationStatus.EXPIRED, ended_at=record.expires_at
                    )
                    await self._listener.on_verification_ended(connection, record, now)
                    # as housekeeping's expiry does: held fallback steps would wait forever
                    await self._cancel_unsent(
                        connection, verification_id, now, "verification expired"
                    )
            await connection.execute(
                _INSERT_CHECK,
                {"verification_id": verification_id, "account_id": account_id,
                 "result": result.value, "checked_at": now},
            )  # fmt: skip
        return result, record

    async def cancel_verification(
        self, account_id: str, verification_id: int, now: datetime
    ) -> VerificationRecord | None:
        v = verifications.c
        async with self._db.write() as connection:
            row = (
                await connection.execute(
                    verifications.update()
                    .where(
                        v.id == verification_id,
                        v.account_id == account_id,
                        v.status == VerificationStatus.PENDING.value,
                    )
                    .values(status=VerificationStatus.CANCELLED.value, ended_at=now)
                    .returning(*verifications.c)
                )
            ).first()
            if row is not None:
                await self._cancel_unsent(connection, verification_id, now, "cancelled")
        return verification_record(row) if row else None

    async def timeline(
        self, account_id: str, verification_id: int
    ) -> tuple[list[MessageRecord], list[dict[str, Any]]]:
        """The verification's messages (each send) and its checks, oldest first."""
        async with self._db.read() as connection:
            sent = (
                await connection.execute(
                    sa.select(messages)
                    .where(
                        messages.c.verification_id == verification_id,
                        messages.c.account_id == account_id,
                    )
                    .order_by(messages.c.step)
                )
            ).all()
            checks = (
                await connection.execute(
                    sa.select(verification_checks.c.checked_at, verification_checks.c.result)
                    .where(
                        verification_checks.c.verification_id == verification_id,
                        verification_checks.c.account_id == account_id,
                    )
                    .order_by(verification_checks.c.id)
                )
            ).all()
        return [message_record(r) for r in sent], [dict(r._mapping) for r in checks]

    async def expire_due(self, now: datetime, limit: int = 500) -> list[VerificationRecord]:
        """Mark pending verifications past their expiry EXPIRED; returns those it marked."""
        v = verifications.c
        async with self._db.write() as connection:
            due = (
                (
                    await connection.execute(
                        sa.select(v.id)
                        .where(v.status == VerificationStatus.PENDING.value, v.expires_at <= now)
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
            if not due:
                return []
            rows = (
                await connection.execute(
                    verifications.update()
                    .where(v.id.in_(due), v.status == VerificationStatus.PENDING.value)
                    .values(status=VerificationStatus.EXPIRED.value, ended_at=now)
                    .returning(*verifications.c)
                )
            ).all()
            for row in rows:
                await self._cancel_unsent(connection, row.id, now, "verification expired")
                await self._listener.on_verification_ended(
                    connection, verification_record(row), now
                )
        return [verification_record(r) for r in rows]


def _final_result(record: VerificationRecord, now: datetime) -> CheckResult | None:
    """The answer for a verification that can no longer be checked; None while it can."""
    status = record.effective_status(now)
    if status is VerificationStatus.VERIFIED:
        return CheckResult.ALREADY_VERIFIED
    if status in (VerificationStatus.EXPIRED, VerificationStatus.CANCELLED):
        return CheckResult.EXPIRED
    if status is VerificationStatus.FAILED or record.attempts >= record.max_attempts:
        return CheckResult.FAILED
    return None
