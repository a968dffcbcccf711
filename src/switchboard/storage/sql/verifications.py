"""SQL persistence of verifications: atomic start with limits, and single-use code checks."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.domain.limits import SendHistory, SendLimits, check_send_limits
from switchboard.domain.messages import MessageRecord, MessageStatus
from switchboard.domain.verification import CheckResult, VerificationRecord, VerificationStatus
from switchboard.errors import SwitchboardError
from switchboard.storage.sql.charges import MessageCharges
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.rows import message_record, message_values, verification_record
from switchboard.storage.sql.tables import (
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
_RECENT = sa.select(_v.destination, _v.status, _v.created_at, _v.expires_at).where(
    _v.account_id == sa.bindparam("p_account"),
    _v.destination.in_(sa.bindparam("p_destinations", expanding=True)),
    _v.created_at > sa.bindparam("p_since"),
)
_days = verification_days.c
_TODAY = (
    sa.select(_days.account_id, _days.day, sa.func.sum(_days.sends).label("sends"))
    .where(
        _days.account_id.in_(sa.bindparam("p_accounts", expanding=True)),
        _days.day.in_(sa.bindparam("p_days", expanding=True)),
    )
    .group_by(_days.account_id, _days.day)
)
# Advisory locks in key order, so two batches never wait for each other in a circle.
_LOCK_KEYS = sa.text(
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT unnest(CAST(:keys AS bigint[])) AS k"
    " ORDER BY 1) AS ordered"
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
_BATCH_MAX = 64
_DEADLOCK_RETRIES = 3


def _is_deadlock(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in {"40P01", "40001"}


def _bump_day(is_sqlite: bool) -> sa.Executable:
    days = verification_days
    values: dict[str, Any] = {
        "account_id": sa.bindparam("p_account"),
        "day": sa.bindparam("p_day"),
        "shard": sa.bindparam("p_shard"),
        "sends": sa.bindparam("p_sends"),
    }
    keys = [days.c.account_id, days.c.day, days.c.shard]
    bump = {"sends": days.c.sends + sa.bindparam("p_sends")}
    if is_sqlite:
        return (
            sqlite.insert(days).values(values).on_conflict_do_update(index_elements=keys, set_=bump)
        )
    return (
        postgresql.insert(days).values(values).on_conflict_do_update(index_elements=keys, set_=bump)
    )


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _lock_key(record: VerificationRecord) -> int:
    digest = hashlib.sha256(f"{record.account_id}|{record.destination}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _history(rows: Sequence[Any], sends_today: int, now: datetime) -> SendHistory:
    """What the limits need to know of a number's verifications of the last day."""
    live = [r.created_at for r in rows if r.status == _PENDING and r.expires_at > now]
    ten_minutes_ago, day_ago = now - timedelta(minutes=10), now - timedelta(days=1)
    return SendHistory(
        last_pending_created_at=max(live, default=None),
        sends_last_10_min=sum(1 for r in rows if r.created_at > ten_minutes_ago),
        sends_last_day=sum(1 for r in rows if r.created_at > day_ago),
        # Read without a lock: on PostgreSQL, sends of one account racing each other may pass
        # the quota by as many as are in flight (as counting rows did).
        account_sends_today=sends_today,
    )


def _verification_values(send: _Send) -> dict[str, Any]:
    record = send.verification
    return {
        "id": record.id,
        "account_id": record.account_id,
        "transaction_id": record.transaction_id,
        "channel": record.channel.value,
        "country_code": record.country_code,
        "mobile_number": record.mobile_number,
        "destination": record.destination,
        "code_hash": record.code_hash,
        "code_length": send.code_length,
        "status": record.status.value,
        "attempts": 0,
        "max_attempts": record.max_attempts,
        "timeout_s": record.timeout_s,
        "fallback": [c.value for c in record.fallback],
        "is_test": record.is_test,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "ended_at": None,
    }


class _Send:
    """One verification waiting for its batch, and the future its request awaits."""

    __slots__ = ("code_length", "done", "limits", "now", "outbound", "verification")

    def __init__(
        self,
        verification: VerificationRecord,
        code_length: int,
        outbound: Sequence[MessageRecord],
        limits: SendLimits | None,
        now: datetime,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.verification = verification
        self.code_length = code_length
        self.outbound = outbound
        self.limits = limits
        self.now = now
        self.done: asyncio.Future[None] = loop.create_future()

    def succeed(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class _SendBatcher:
    """Group commit for sends: while one batch is in the database the next one gathers.

    A lone send goes at once (a batch of one); under load each transaction carries up to
    `_BATCH_MAX` sends. A batch holds one send per number (a second one waits for the next
    batch, so it sees the first one's row); a send whose request is gone before its batch
    starts is dropped unwritten."""

    def __init__(self, run: Callable[[list[_Send]], Awaitable[None]], *, max_size: int) -> None:
        self._run = run
        self._max_size = max_size
        self._waiting: list[_Send] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, send: _Send) -> None:
        self._waiting.append(send)
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="verification-batches")
        await send.done

    def _next(self) -> list[_Send]:
        batch: list[_Send] = []
        rest: list[_Send] = []
        numbers: set[tuple[str, str]] = set()
        for send in self._waiting:
            if send.done.done():  # the request was cancelled while it waited
                continue
            number = (send.verification.account_id, send.verification.destination)
            if len(batch) < self._max_size and number not in numbers:
                batch.append(send)
                numbers.add(number)
            else:
                rest.append(send)
        self._waiting = rest
        return batch

    async def _drain(self) -> None:
        batch: list[_Send] = []
        try:
            while batch := self._next():
                for attempt in range(_DEADLOCK_RETRIES + 1):
                    try:
                        await self._run([x for x in batch if not x.done.done()])
                    except DBAPIError as exc:
                        # PostgreSQL broke a lock cycle with a worker's transaction by
                        # aborting this one: nothing of it was kept, run it again.
                        if _is_deadlock(exc) and attempt < _DEADLOCK_RETRIES:
                            continue
                        for send in batch:
                            send.fail(exc)
                    except Exception as exc:  # the batch's transaction failed: all of it did
                        for send in batch:
                            send.fail(exc)
                    break
        except BaseException as exc:  # cancelled (shutdown): nobody may wait forever
            for send in [*batch, *self._waiting]:
                send.fail(exc)
            self._waiting.clear()
            raise
        finally:
            self._task = None


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
        # With billing, one send per transaction as before: a batch would hold the wallet row
        # (one send's refund) while it locks the next send's messages, and the worker locks
        # messages before the wallet: a lock cycle. Sends of one account queue on the wallet
        # row through each commit anyway.
        self._batcher = _SendBatcher(self._start_batch, max_size=1 if charges else _BATCH_MAX)

    async def _cancel_unsent(
        self, connection: AsyncConnection, verification_id: int, now: datetime, reason: str
    ) -> None:
        cancelled = await cancel_unsent_messages(connection, verification_id, now, reason)
        if cancelled:
            await self._charges.on_cancelled(connection, now, message_ids=cancelled, reason=reason)

    async def start_verification(
        self,
        verification: VerificationRecord,
        code_length: int,
        outbound: Sequence[MessageRecord],
        limits: SendLimits | None,
        now: datetime,
    ) -> None:
        """Check the limits, end the number's pending verification, store the new one and its
        messages: one transaction, so nothing is queued unless everything is.

        Sends that arrive while the writer is busy wait together and go in as one batch: one
        transaction, one statement per kind of row (`_SendBatcher`)."""
        await self._batcher.submit(
            _Send(verification, code_length, outbound, limits, now, asyncio.get_running_loop())
        )

    async def _start_batch(self, batch: list[_Send]) -> None:
        """One transaction for sends to distinct numbers. A send refused by its limits gets its
        error at once and writes nothing; the others are answered after the commit."""
        if not batch:
            return
        async with self._db.write() as connection:
            if not self._db.is_sqlite:  # serialise sends to one number so the limits hold
                keys = sorted({_lock_key(x.verification) for x in batch})
                await connection.execute(_LOCK_KEYS, {"keys": keys})
            recent, today = await self._recent(connection, batch)
            accepted: list[tuple[_Send, bool]] = []
            for send in batch:
                record = send.verification
                rows = recent.get((record.account_id, record.destination), [])
                if send.limits is not None:
                    day_key = (record.account_id, _day(send.now))
                    history = _history(rows, today.get(day_key, 0), send.now)
                    try:
                        check_send_limits(history, send.limits, send.now)
                    except SwitchboardError as exc:
                        send.fail(exc)
                        continue
                    today[day_key] = today.get(day_key, 0) + 1
                # test numbers skip the history: end any pending one
                pending = send.limits is None or any(r.status == _PENDING for r in rows)
                accepted.append((send, pending))
            await self._store(connection, accepted)
            counted = Counter(
                (send.verification.account_id, _day(send.now))
                for send, _ in accepted
                if send.limits is not None
            )
            shard = batch[0].verification.id % _DAY_SHARDS
            for (account_id, day), sends in sorted(counted.items()):
                # Last in the transaction: on PostgreSQL the row stays locked until the commit.
                await connection.execute(
                    self._bump_day,
                    {"p_account": account_id, "p_day": day, "p_shard": shard, "p_sends": sends},
                )
        for send, _ in accepted:
            send.succeed()

    async def _recent(
        self, connection: AsyncConnection, batch: list[_Send]
    ) -> tuple[dict[tuple[str, str], list[Any]], dict[tuple[str, str], int]]:
        """The numbers' verifications of the last day, and the accounts' sends per day."""
        limited = [x for x in batch if x.limits is not None]
        recent: dict[tuple[str, str], list[Any]] = {}
        today: dict[tuple[str, str], int] = {}
        if not limited:
            return recent, today
        since = min(x.now for x in limited) - timedelta(days=1)
        by_account: dict[str, list[str]] = {}
        for send in limited:
            by_account.setdefault(send.verification.account_id, []).append(
                send.verification.destination
            )
        for account_id, destinations in by_account.items():
            rows = await connection.execute(
                _RECENT,
                {"p_account": account_id, "p_destinations": destinations, "p_since": since},
            )
            for row in rows:
                recent.setdefault((account_id, row.destination), []).append(row)
        rows = await connection.execute(
            _TODAY,
            {"p_accounts": sorted(by_account), "p_days": sorted({_day(x.now) for x in limited})},
        )
        today = {(row.account_id, row.day): int(row.sends or 0) for row in rows}
        return recent, today

    async def _store(self, connection: AsyncConnection, sends: list[tuple[_Send, bool]]) -> None:
        """End each number's pending verification, insert the new ones and their messages."""
        for send, pending in sends:
            if not pending:
                continue
            record = send.verification
            previous = (
                await connection.execute(
                    _END_PENDING,
                    {"p_account": record.account_id, "p_destination": record.destination,
                     "p_now": send.now},
                )
            ).scalars().all()  # fmt: skip
            for previous_id in previous:
                await self._cancel_unsent(connection, previous_id, send.now, "replaced by a resend")
        if not sends:
            return
        await connection.execute(_INSERT_VERIFICATION, [_verification_values(x) for x, _ in sends])
        outbound = [m for send, _ in sends for m in send.outbound]
        outbound = list(await self._charges.on_accept(connection, outbound))
        await connection.execute(messages.insert(), [message_values(m) for m in outbound])

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
