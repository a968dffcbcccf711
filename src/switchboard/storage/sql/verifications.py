"""SQL persistence of verifications: atomic start with limits, and single-use code checks."""

from __future__ import annotations

from collections import Counter
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
from switchboard.errors import SwitchboardError
from switchboard.storage.sql.batches import Batches, Waiting
from switchboard.storage.sql.charges import MessageCharges
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.locks import advisory_key, lock_names
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
        messages.c.verification_id.in_(sa.bindparam("p_verifications", expanding=True)),
        messages.c.status.in_(_UNSENT),
    )
    .values(
        status=MessageStatus.CANCELLED.value,
        otp_code=None,
        done_at=sa.bindparam("p_now"),
        updated_at=sa.bindparam("p_now"),
    )
    .returning(messages.c.id, messages.c.account_id, messages.c.verification_id)
)
_SELECT_MANY = sa.select(verifications).where(
    verifications.c.id.in_(sa.bindparam("p_ids", expanding=True))
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
    _v.id.in_(sa.bindparam("p_ids", expanding=True)),
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


class _Send(Waiting[None]):
    """One verification to start."""

    __slots__ = ("code_length", "limits", "now", "outbound", "verification")

    def __init__(
        self,
        verification: VerificationRecord,
        code_length: int,
        outbound: Sequence[MessageRecord],
        limits: SendLimits | None,
        now: datetime,
    ) -> None:
        super().__init__()
        self.verification = verification
        self.code_length = code_length
        self.outbound = outbound
        self.limits = limits
        self.now = now


class _Check(Waiting[tuple[CheckResult, VerificationRecord | None]]):
    """One code to check."""

    __slots__ = ("account_id", "matches", "now", "verification_id")

    def __init__(
        self,
        account_id: str,
        verification_id: int,
        matches: Callable[[VerificationRecord], bool],
        now: datetime,
    ) -> None:
        super().__init__()
        self.account_id = account_id
        self.verification_id = verification_id
        self.matches = matches
        self.now = now


async def cancel_unsent_messages(
    connection: AsyncConnection, verification_id: int, now: datetime, reason: str
) -> list[str]:
    """An ended verification's messages that no carrier has yet are never sent; their ids."""
    cancelled = (
        await connection.execute(
            _CANCEL_UNSENT, {"p_verifications": [verification_id], "p_now": now}
        )
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


async def end_verification(
    connection: AsyncConnection,
    record: VerificationRecord,
    now: datetime,
    reason: str,
    *,
    charges: MessageCharges,
    listener: VerificationListener,
) -> None:
    """What follows a verification's end in the transaction that ended it, in the store's
    lock order (messages, then the wallet): its unsent messages cancelled and refunded, then
    the customer's callback written."""
    cancelled = await cancel_unsent_messages(connection, record.id, now, reason)
    if cancelled:
        await charges.on_cancelled(connection, now, message_ids=cancelled, reason=reason)
    await listener.on_verification_ended(connection, record, now)


class VerificationListener:
    """Called inside the transaction that ends a verification: VERIFIED, FAILED or EXPIRED
    (customer callbacks)."""

    async def on_verification_ended(
        self, connection: AsyncConnection, record: VerificationRecord, now: datetime
    ) -> None:
        return None

    async def on_verifications_ended(
        self, connection: AsyncConnection, records: Sequence[VerificationRecord], now: datetime
    ) -> None:
        """Several at once (a batch of checks); override to share the lookups."""
        for record in records:
            await self.on_verification_ended(connection, record, now)


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
        self._sends = Batches(
            self._start_batch,
            key=lambda x: (x.verification.account_id, x.verification.destination),
            max_size=1 if charges else _BATCH_MAX,
            name="verification-sends",
        )
        self._checks = Batches(
            self._check_batch,
            key=lambda x: x.verification_id,
            max_size=1 if charges else _BATCH_MAX,  # a check's refunds lock the wallet too
            name="verification-checks",
        )

    async def _cancel_unsent(
        self, connection: AsyncConnection, verification_id: int, now: datetime, reason: str
    ) -> None:
        cancelled = await cancel_unsent_messages(connection, verification_id, now, reason)
        if cancelled:
            await self._charges.on_cancelled(connection, now, message_ids=cancelled, reason=reason)

    async def _end(
        self, connection: AsyncConnection, record: VerificationRecord, now: datetime, reason: str
    ) -> None:
        await end_verification(
            connection, record, now, reason, charges=self._charges, listener=self._listener
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
        messages: one transaction, so nothing is queued unless everything is.

        Sends that arrive while the writer is busy wait together and go in as one batch: one
        transaction, one statement per kind of row (`_SendBatcher`)."""
        send = _Send(verification, code_length, outbound, limits, now)
        await self._sends.submit(send)
        send.done.result()

    async def _start_batch(self, batch: list[_Send]) -> None:
        """One transaction for sends to distinct numbers. A send refused by its limits gets its
        error at once and writes nothing; the others are answered after the commit."""
        if not batch:
            return
        async with self._db.write() as connection:
            if not self._db.is_sqlite:  # serialise sends to one number so the limits hold
                await lock_names(
                    connection,
                    (advisory_key(x.verification.account_id, x.verification.destination)
                     for x in batch),
                )  # fmt: skip
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
            send.succeed(None)

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
        """One attempt, counted before the compare; the first right code wins (single use).
        Checks arriving together share a transaction (group commit)."""
        check = _Check(account_id, verification_id, matches, now)
        await self._checks.submit(check)
        return check.done.result()

    async def _check_batch(self, batch: list[_Check]) -> None:
        """The batch's checks with one statement per step: read the verifications, count
        the right and the wrong attempts, cancel the ended ones' unsent messages, record the
        checks. Each attempt counts only while its code is live (single use)."""
        now = max(check.now for check in batch)
        outcomes: dict[int, tuple[CheckResult, VerificationRecord | None]] = {}
        async with self._db.write() as connection:
            found = await connection.execute(
                _SELECT_MANY, {"p_ids": [c.verification_id for c in batch]}
            )
            records = {row.id: verification_record(row) for row in found}
            right: list[int] = []
            wrong: list[int] = []
            for check in batch:
                record = records.get(check.verification_id)
                if record is None or record.account_id != check.account_id:
                    outcomes[check.verification_id] = (CheckResult.NOT_FOUND, None)
                    continue
                result = _final_result(record, now)
                if result is None:
                    (right if check.matches(record) else wrong).append(record.id)
                elif result is CheckResult.EXPIRED and record.status is VerificationStatus.PENDING:
                    record = await self._expire(connection, record, now)
                    outcomes[record.id] = (result, record)
                else:
                    outcomes[record.id] = (result, record)
            ended: list[VerificationRecord] = []
            newly_ended: list[VerificationRecord] = []  # by this batch's attempts
            for ids, statement, counted in (
                (right, _RIGHT_CODE, CheckResult.VERIFIED),
                (wrong, _WRONG_CODE, CheckResult.WRONG_CODE),
            ):
                if not ids:
                    continue
                rows = await connection.execute(statement, {"p_ids": ids, "p_now": now})
                updated = {row.id: verification_record(row) for row in rows}
                for verification_id in ids:
                    record = updated.get(verification_id) or await self._reread(
                        connection, verification_id
                    )
                    if verification_id in updated:
                        outcomes[verification_id] = (counted, record)
                        if record.status is not VerificationStatus.PENDING:
                            newly_ended.append(record)
                    else:  # lost a race: what won decides
                        outcomes[verification_id] = (
                            _final_result(record, now) or CheckResult.FAILED,
                            record,
                        )
                    if record.status is not VerificationStatus.PENDING:
                        ended.append(record)
            if newly_ended:
                await self._listener.on_verifications_ended(connection, newly_ended, now)
            await self._cancel_ended(connection, ended, now)
            checks = [
                {"verification_id": c.verification_id, "account_id": c.account_id,
                 "result": outcomes[c.verification_id][0].value, "checked_at": c.now}
                for c in batch
                if outcomes[c.verification_id][0] is not CheckResult.NOT_FOUND
            ]  # fmt: skip
            if checks:
                await connection.execute(_INSERT_CHECK, checks)
        for check in batch:
            check.succeed(outcomes[check.verification_id])

    async def _reread(
        self, connection: AsyncConnection, verification_id: int
    ) -> VerificationRecord:
        return verification_record(
            (await connection.execute(_SELECT, {"p_id": verification_id})).one()
        )

    async def _expire(
        self, connection: AsyncConnection, record: VerificationRecord, now: datetime
    ) -> VerificationRecord:
        """A pending code past its expiry, found by a check before housekeeping did."""
        v = verifications.c
        expired = await connection.execute(
            verifications.update()
            .where(v.id == record.id, v.status == VerificationStatus.PENDING.value)
            .values(status=VerificationStatus.EXPIRED.value, ended_at=record.expires_at)
        )
        if expired.rowcount != 1:
            return record
        record = replace(record, status=VerificationStatus.EXPIRED, ended_at=record.expires_at)
        # as housekeeping's expiry does: held fallback steps would wait forever
        await self._end(connection, record, now, "verification expired")
        return record

    async def _cancel_ended(
        self, connection: AsyncConnection, ended: list[VerificationRecord], now: datetime
    ) -> None:
        """Ended verifications' messages that no carrier has yet are never sent."""
        if not ended:
            return
        reasons = {r.id: f"verification {r.status.value.lower()}" for r in ended}
        cancelled = (
            await connection.execute(
                _CANCEL_UNSENT, {"p_verifications": sorted(reasons), "p_now": now}
            )
        ).all()
        if not cancelled:
            return
        await connection.execute(
            message_events.insert(),
            [
                {"message_id": row.id, "account_id": row.account_id,
                 "status": MessageStatus.CANCELLED.value,
                 "detail": reasons[row.verification_id], "at": now}
                for row in cancelled
            ],
        )  # fmt: skip
        by_reason: dict[str, list[str]] = {}
        for row in cancelled:
            by_reason.setdefault(reasons[row.verification_id], []).append(row.id)
        for reason, ids in by_reason.items():
            await self._charges.on_cancelled(connection, now, message_ids=ids, reason=reason)

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
                await self._end(connection, verification_record(row), now, "verification expired")
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
