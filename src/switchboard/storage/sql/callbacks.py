"""Customer callbacks in SQL: endpoint settings, delivery rows and their leases.

Delivery rows are written by `SqlCallbackEvents` inside the transaction that changes a message
or ends a verification, so an event is recorded exactly when its change commits. Workers claim
due rows under a lease (FOR UPDATE SKIP LOCKED on PostgreSQL, the single writer on SQLite),
send without a transaction open, and settle guarded by the lease owner.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.domain.callbacks import (
    ATTEMPT_HISTORY,
    BATCHED_EVENTS,
    MESSAGE_STATUS_EVENT,
    VERIFICATION_EVENTS,
    AttemptRecord,
    CallbackEndpoint,
    DeliveryState,
    DueDelivery,
    Settlement,
    VerificationEvent,
    VerificationEventType,
    WebhookDelivery,
    callback_error_code,
    delivery_payload,
    encode_payload,
    national_number,
    new_webhook_id,
    verification_event_payload,
)
from switchboard.domain.messages import MessageStatus
from switchboard.domain.verification import VerificationRecord, VerificationStatus
from switchboard.storage.sql.engines import Database, after_commit
from switchboard.storage.sql.locks import leased_first
from switchboard.storage.sql.queue import StatusListener
from switchboard.storage.sql.rows import verification_record
from switchboard.storage.sql.tables import accounts, messages, verifications, webhook_deliveries
from switchboard.storage.sql.transaction_buffer import TransactionBuffer
from switchboard.storage.sql.verifications import VerificationListener

a = accounts.c
d = webhook_deliveries.c

_ENDPOINT_COLUMNS = (
    a.id, a.settings, a.callback_url, a.callback_secret, a.callback_previous_secret,
    a.callback_rotated_at, a.callback_disabled_at, a.callback_disabled_reason,
)  # fmt: skip
_ENDPOINT_FIELDS = {
    "url": "callback_url",
    "secret": "callback_secret",
    "disabled_at": "callback_disabled_at",
    "disabled_reason": "callback_disabled_reason",
}
_VERIFICATION_EVENT_TYPES = {
    VerificationStatus.VERIFIED: VerificationEventType.VERIFIED,
    VerificationStatus.EXPIRED: VerificationEventType.EXPIRED,
    VerificationStatus.FAILED: VerificationEventType.FAILED,
}
_ERROR_CHARS = 400
_PENDING = DeliveryState.PENDING.value

# Prebuilt statements for the hot paths: building SQLAlchemy constructs per call costs more
# than running them (bench/RESULTS.md). Parameters are bound by name per row.
_INSERT_DELIVERY = webhook_deliveries.insert().values(
    id=sa.bindparam("b_id"), account_id=sa.bindparam("b_account_id"),
    event_type=sa.bindparam("b_event_type"), message_id=sa.bindparam("b_message_id"),
    verification_id=sa.bindparam("b_verification_id"), url=sa.bindparam("b_url"),
    payload=sa.bindparam("b_payload"), status=_PENDING,
    next_attempt_at=sa.bindparam("b_now"), created_at=sa.bindparam("b_now"),
)  # fmt: skip
# Guarded by the lease owner: a worker whose lease ran out (and was claimed again) writes nothing.
_SETTLE = (
    webhook_deliveries.update()
    .where(
        d.id == sa.bindparam("b_id"),
        d.lease_owner == sa.bindparam("b_owner"),
        d.status == _PENDING,
    )
    .values(
        status=sa.bindparam("b_status"), attempts=d.attempts + 1, url=sa.bindparam("b_url"),
        last_status_code=sa.bindparam("b_status_code"), last_error=sa.bindparam("b_error"),
        last_latency_ms=sa.bindparam("b_latency_ms"),
        recent_attempts=sa.bindparam("b_history"), lease_owner=None, lease_until=None,
        next_attempt_at=sa.bindparam("b_next_attempt_at"),
        delivered_at=sa.bindparam("b_delivered_at"), dead_at=sa.bindparam("b_dead_at"),
    )
)  # fmt: skip
_DISABLE_ENDPOINT = (
    accounts.update()
    .where(a.id == sa.bindparam("b_account_id"), a.callback_disabled_at.is_(None))
    .values(
        callback_disabled_at=sa.bindparam("b_now"),
        callback_disabled_reason=sa.bindparam("b_reason"),
    )
)
_ENDPOINT = sa.select(*_ENDPOINT_COLUMNS).where(a.id == sa.bindparam("b_id"))
_ENDPOINTS = sa.select(*_ENDPOINT_COLUMNS).where(a.id.in_(sa.bindparam("b_ids", expanding=True)))
_MESSAGES = sa.select(messages).where(messages.c.id.in_(sa.bindparam("b_ids", expanding=True)))
_VERIFICATIONS = sa.select(verifications).where(
    verifications.c.id.in_(sa.bindparam("b_ids", expanding=True))
)


def _endpoint(row: Any) -> CallbackEndpoint:
    events = (row.settings or {}).get("callback_events") or []
    return CallbackEndpoint(
        account_id=row.id,
        url=row.callback_url,
        secret=row.callback_secret,
        previous_secret=row.callback_previous_secret,
        rotated_at=row.callback_rotated_at,
        disabled_at=row.callback_disabled_at,
        disabled_reason=row.callback_disabled_reason,
        events=frozenset(str(event) for event in events),
    )


def _attempt_values(attempt: AttemptRecord) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "at": attempt.at.isoformat(),
        "statusCode": attempt.status_code,
        "latencyMs": attempt.latency_ms,
        "error": attempt.error,
    }


def _attempt(values: dict[str, Any]) -> AttemptRecord:
    return AttemptRecord(
        attempt=int(values["attempt"]),
        at=datetime.fromisoformat(values["at"]),
        latency_ms=int(values["latencyMs"]),
        status_code=values.get("statusCode"),
        error=values.get("error"),
    )


def _delivery(row: sa.Row[Any]) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        account_id=row.account_id,
        event_type=row.event_type,
        message_id=row.message_id,
        verification_id=row.verification_id,
        url=row.url,
        payload=row.payload,
        status=DeliveryState(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        dead_at=row.dead_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        last_latency_ms=row.last_latency_ms,
        replays=row.replays,
        recent_attempts=tuple(_attempt(x) for x in row.recent_attempts or []),
    )


async def load_endpoint(connection: AsyncConnection, account_id: str) -> CallbackEndpoint | None:
    row = (await connection.execute(_ENDPOINT, {"b_id": account_id})).first()
    return _endpoint(row) if row else None


async def add_delivery(
    connection: AsyncConnection,
    endpoint: CallbackEndpoint,
    *,
    event_type: str,
    payload: dict[str, Any],
    now: datetime,
    message_id: str | None = None,
    verification_id: int | None = None,
    webhook_id: str | None = None,
) -> str:
    """Record one event for `endpoint` in the caller's transaction; due at once."""
    assert endpoint.url is not None
    delivery_id = webhook_id or new_webhook_id()
    await connection.execute(
        _INSERT_DELIVERY,
        _delivery_values(
            delivery_id, endpoint, event_type, payload, now, message_id, verification_id
        ),
    )
    return delivery_id


def _delivery_values(
    delivery_id: str,
    endpoint: CallbackEndpoint,
    event_type: str,
    payload: dict[str, Any],
    now: datetime,
    message_id: str | None,
    verification_id: int | None,
) -> dict[str, Any]:
    return {
        "b_id": delivery_id, "b_account_id": endpoint.account_id, "b_event_type": event_type,
        "b_message_id": message_id, "b_verification_id": verification_id,
        "b_url": endpoint.url, "b_payload": encode_payload(payload).decode("ascii"),
        "b_now": now,
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Report:
    """A message status change waiting for its transaction's end to become a delivery row."""

    message_id: str
    account_id: str
    report: str
    now: datetime
    error_code: str | None


def _report_payload(
    message: sa.Row[Any],
    verification: VerificationRecord | None,
    report: str,
    now: datetime,
    error_code: str | None,
) -> dict[str, Any]:
    country = message.country_code
    number = national_number(message.destination, country)
    if number is None and verification is not None:
        # an OTP e-mail: its verification still has the number it was started for
        # (none, for a code sent to an address alone)
        country, number = verification.country_code, verification.mobile_number or None
    return delivery_payload(
        message_id=message.id,
        status=report,
        country_code=country,
        national_number=number,
        submitted_at=message.submitted_at or message.created_at,
        done_at=message.done_at or now,
        error_code=callback_error_code(error_code or message.error_code),
    )


class SqlCallbackEvents(StatusListener, VerificationListener):
    """Writes webhook rows inside the transactions that change messages and verifications.

    Every message status with a report name (DELIVRD …) becomes the spec's callback body for an
    account with an active endpoint; with the `verification` subscription, verifications that
    end and codes sent on a fallback channel become verification events. `wake` runs after
    the commit, so the dispatcher sees the row at once.
    """

    def __init__(self, wake: Callable[[], None] = lambda: None) -> None:
        self._wake = wake
        # Reports of each open transaction, written together just before it commits: a
        # receipt batch then costs three statements instead of three per message.
        self._reports = TransactionBuffer(self._write_reports)

    async def on_status(
        self,
        connection: AsyncConnection,
        message: sa.Row[Any],
        status: MessageStatus,
        now: datetime,
        error_code: str | None,
    ) -> None:
        report = status.report_name
        if report is not None:
            await self._reports.add(
                connection, _Report(message.id, message.account_id, report, now, error_code)
            )
            return
        if not (
            status is MessageStatus.SUBMITTED
            and message.verification_id is not None
            and message.step > 0
        ):
            return
        endpoint = await load_endpoint(connection, message.account_id)
        if endpoint is None or not endpoint.active or VERIFICATION_EVENTS not in endpoint.events:
            return
        # The row handed over was read before the update: read what this transaction wrote.
        fresh = (await connection.execute(_MESSAGES, {"b_ids": [message.id]})).one()
        found = (
            await connection.execute(_VERIFICATIONS, {"b_ids": [fresh.verification_id]})
        ).first()
        if found is None:
            return
        verification = verification_record(found)
        plan = (verification.channel, *verification.fallback)
        previous = plan[min(fresh.step, len(plan)) - 1]
        await self._add_verification_event(
            connection, endpoint, verification, VerificationEventType.FALLBACK, now, now,
            channel=previous.value, next_channel=fresh.channel,
        )  # fmt: skip

    async def _write_reports(self, connection: AsyncConnection, reports: list[_Report]) -> None:
        """The delivery rows of this transaction's reports, as its last statements.

        Reads the messages as the transaction leaves them (done time, error code), and the
        endpoints once per account; accounts without an active endpoint get no rows.
        """
        accounts_ids = sorted({r.account_id for r in reports})
        endpoints = {
            row.id: endpoint
            for row in await connection.execute(_ENDPOINTS, {"b_ids": accounts_ids})
            if (endpoint := _endpoint(row)).active
        }
        wanted = [r for r in reports if r.account_id in endpoints]
        if not wanted:
            return
        rows = {
            row.id: row
            for row in await connection.execute(
                _MESSAGES, {"b_ids": sorted({r.message_id for r in wanted})}
            )
        }
        verification_ids = sorted(
            {row.verification_id for row in rows.values() if row.verification_id is not None}
        )
        found = {}
        if verification_ids:
            found = {
                row.id: verification_record(row)
                for row in await connection.execute(_VERIFICATIONS, {"b_ids": verification_ids})
            }
        values = []
        for r in wanted:
            message = rows.get(r.message_id)
            if message is None:
                continue
            verification = (
                found.get(message.verification_id) if message.verification_id is not None else None
            )
            payload = _report_payload(message, verification, r.report, r.now, r.error_code)
            values.append(
                _delivery_values(
                    new_webhook_id(), endpoints[r.account_id], MESSAGE_STATUS_EVENT, payload,
                    r.now, message.id, None,
                )
            )  # fmt: skip
        if values:
            await connection.execute(_INSERT_DELIVERY, values)
            after_commit(connection, self._wake)

    async def on_verifications_ended(
        self, connection: AsyncConnection, records: Sequence[VerificationRecord], now: datetime
    ) -> None:
        # a batch of checks: each account's endpoint read once (it was a round trip per code)
        endpoints: dict[str, CallbackEndpoint | None] = {}
        for record in records:
            await self.on_verification_ended(connection, record, now, endpoints)

    async def on_verification_ended(
        self,
        connection: AsyncConnection,
        record: VerificationRecord,
        now: datetime,
        endpoints: dict[str, CallbackEndpoint | None] | None = None,
    ) -> None:
        event_type = _VERIFICATION_EVENT_TYPES.get(record.status)
        if event_type is None:
            return
        if endpoints is not None and record.account_id in endpoints:
            endpoint = endpoints[record.account_id]
        else:
            endpoint = await load_endpoint(connection, record.account_id)
            if endpoints is not None:
                endpoints[record.account_id] = endpoint
        if endpoint is None or not endpoint.active or VERIFICATION_EVENTS not in endpoint.events:
            return
        await self._add_verification_event(
            connection, endpoint, record, event_type, record.ended_at or now, now,
            channel=record.channel.value,
        )  # fmt: skip

    async def _add_verification_event(
        self,
        connection: AsyncConnection,
        endpoint: CallbackEndpoint,
        verification: VerificationRecord,
        event_type: VerificationEventType,
        occurred_at: datetime,
        now: datetime,
        *,
        channel: str,
        next_channel: str | None = None,
    ) -> None:
        sequence = await connection.scalar(
            sa.select(sa.func.count()).where(d.verification_id == verification.id)
        )
        webhook_id = new_webhook_id()
        event = VerificationEvent(
            event_id=webhook_id,
            type=event_type,
            occurred_at=occurred_at,
            sequence=int(sequence or 0) + 1,
            verification_id=str(verification.id),
            customer_id=verification.account_id,
            country_code=verification.country_code,
            national_number=verification.mobile_number,
            channel=channel,
            next_channel=next_channel,
        )
        await add_delivery(
            connection, endpoint, event_type=event_type.value,
            payload=verification_event_payload(event), now=now,
            verification_id=verification.id, webhook_id=webhook_id,
        )  # fmt: skip
        after_commit(connection, self._wake)


class SqlCallbackStore:
    def __init__(self, database: Database, *, rotation_overlap: timedelta) -> None:
        self._db = database
        self._overlap = rotation_overlap

    # -- endpoints ------------------------------------------------------------------------

    async def get_endpoint(self, account_id: str) -> CallbackEndpoint | None:
        async with self._db.read() as connection:
            return await load_endpoint(connection, account_id)

    async def update_endpoint(
        self,
        account_id: str,
        now: datetime,
        *,
        events: Collection[str] | None = None,
        **changes: Any,
    ) -> CallbackEndpoint | None:
        """Change `url`, `secret`, `disabled_at`, `disabled_reason` and the subscribed events."""
        values: dict[str, Any] = {_ENDPOINT_FIELDS[name]: v for name, v in changes.items()}
        async with self._db.write() as connection:
            if events is not None:
                current = await connection.scalar(sa.select(a.settings).where(a.id == account_id))
                values["settings"] = {**(current or {}), "callback_events": sorted(events)}
            await connection.execute(
                accounts.update().where(a.id == account_id).values(**values, updated_at=now)
            )
            return await load_endpoint(connection, account_id)

    async def rotate_secret(
        self, account_id: str, secret: str, now: datetime
    ) -> CallbackEndpoint | None:
        """The current secret becomes the previous one (it keeps signing for a while)."""
        async with self._db.write() as connection:
            await connection.execute(
                accounts.update()
                .where(a.id == account_id)
                .values(
                    callback_previous_secret=a.callback_secret,
                    callback_secret=secret,
                    callback_rotated_at=now,
                    updated_at=now,
                )
            )
            return await load_endpoint(connection, account_id)

    # -- the dispatcher's side ------------------------------------------------------------

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        limit: int,
        lease_s: float,
        *,
        skip_accounts: Collection[str] = (),
    ) -> list[DueDelivery]:
        """Lease up to `limit` due deliveries, oldest due first, with their endpoints' state.

        Accounts in `skip_accounts` (endpoints already busy in this worker) are left alone.
        """
        due = (
            sa.select(d.id)
            .where(
                d.status == DeliveryState.PENDING.value,
                d.next_attempt_at <= now,
                sa.or_(d.lease_until.is_(None), d.lease_until < now),
            )
            .order_by(d.next_attempt_at)
            .limit(limit)
        )
        if skip_accounts:
            due = due.where(d.account_id.not_in(list(skip_accounts)))
        chosen = d.id.in_(due.scalar_subquery()) if self._db.is_sqlite else leased_first(d.id, due)
        async with self._db.write() as connection:
            rows = (
                await connection.execute(
                    webhook_deliveries.update()
                    .where(chosen)
                    .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s))
                    .returning(
                        d.id,
                        d.account_id,
                        d.payload,
                        d.attempts,
                        d.next_attempt_at,
                        d.recent_attempts,
                        d.event_type,
                        d.url,
                    )
                )
            ).all()
            if not rows:
                return []
            endpoints = {
                row.id: _endpoint(row)
                for row in await connection.execute(
                    _ENDPOINTS, {"b_ids": sorted({r.account_id for r in rows})}
                )
            }
        claimed = []
        for row in sorted(rows, key=lambda r: r.next_attempt_at):
            endpoint = endpoints[row.account_id]
            history = tuple(_attempt(x) for x in row.recent_attempts or [])
            if row.event_type in BATCHED_EVENTS:
                # a partner's URL, kept on the row by whoever owns it; posted unsigned
                claimed.append(
                    DueDelivery(
                        id=row.id, account_id=row.account_id,
                        payload=row.payload.encode("ascii"), attempts=row.attempts,
                        url=row.url, signing_secrets=(), endpoint_disabled=False,
                        history=history, event_type=row.event_type,
                    )
                )  # fmt: skip
                continue
            claimed.append(
                DueDelivery(
                    id=row.id,
                    account_id=row.account_id,
                    payload=row.payload.encode("ascii"),
                    attempts=row.attempts,
                    url=endpoint.url,
                    signing_secrets=endpoint.signing_secrets(now, self._overlap),
                    endpoint_disabled=endpoint.disabled_at is not None,
                    history=history,
                    event_type=row.event_type,
                )
            )
        return claimed

    async def release(self, ids: Sequence[str], owner: str) -> None:
        """Give back claimed deliveries untouched (their endpoint is busy)."""
        if not ids:
            return
        async with self._db.write() as connection:
            await connection.execute(
                webhook_deliveries.update()
                .where(d.id.in_(list(ids)), d.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    async def settle_many(
        self, owner: str, settlements: Sequence[Settlement], now: datetime
    ) -> int:
        """Record the attempts of claimed deliveries, one transaction for all; returns how many
        rows were written (a delivery whose lease was lost meanwhile is left alone).

        The history comes from the claim: while the lease is ours nobody else writes the row.
        """
        if not settlements:
            return 0
        values = []
        disable: dict[str, str] = {}
        for s in settlements:
            history = [*map(_attempt_values, s.delivery.history), _attempt_values(s.attempt)]
            values.append(
                {
                    "b_id": s.delivery.id, "b_owner": owner, "b_status": s.state.value,
                    "b_url": s.url, "b_status_code": s.attempt.status_code,
                    "b_error": (s.attempt.error or "")[:_ERROR_CHARS] or None,
                    "b_latency_ms": s.attempt.latency_ms,
                    "b_history": history[-ATTEMPT_HISTORY:],
                    "b_next_attempt_at": (
                        s.next_attempt_at if s.state is DeliveryState.PENDING else None
                    ),
                    "b_delivered_at": now if s.state is DeliveryState.DELIVERED else None,
                    "b_dead_at": now if s.state is DeliveryState.DEAD else None,
                }
            )  # fmt: skip
            if s.disable_endpoint is not None:
                disable.setdefault(s.delivery.account_id, s.disable_endpoint)
        async with self._db.write() as connection:
            written = (await connection.execute(_SETTLE, values)).rowcount
            if disable:
                await connection.execute(
                    _DISABLE_ENDPOINT,
                    [
                        {"b_account_id": account, "b_now": now, "b_reason": reason[:_ERROR_CHARS]}
                        for account, reason in sorted(disable.items())
                    ],
                )
        return written

    async def dead_letter(self, delivery_id: str, owner: str, reason: str, now: datetime) -> bool:
        """Move a claimed delivery to the dead letter without sending it (no endpoint now)."""
        async with self._db.write() as connection:
            updated = await connection.execute(
                webhook_deliveries.update()
                .where(
                    d.id == delivery_id,
                    d.lease_owner == owner,
                    d.status == DeliveryState.PENDING.value,
                )
                .values(
                    status=DeliveryState.DEAD.value,
                    last_error=reason[:_ERROR_CHARS],
                    lease_owner=None,
                    lease_until=None,
                    next_attempt_at=None,
                    dead_at=now,
                )
            )
        return updated.rowcount == 1

    # -- the customer's side --------------------------------------------------------------

    async def list_deliveries(
        self,
        account_id: str,
        *,
        status: DeliveryState | None = None,
        message_id: str | None = None,
        limit: int = 50,
    ) -> list[WebhookDelivery]:
        """Newest first."""
        query = sa.select(webhook_deliveries).where(d.account_id == account_id)
        if status is not None:
            query = query.where(d.status == status.value)
        if message_id is not None:
            query = query.where(d.message_id == message_id)
        query = query.order_by(d.created_at.desc(), d.id.desc()).limit(limit)
        async with self._db.read() as connection:
            rows = (await connection.execute(query)).all()
        return [_delivery(row) for row in rows]

    async def get_delivery(self, account_id: str, delivery_id: str) -> WebhookDelivery | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(webhook_deliveries).where(
                        d.id == delivery_id, d.account_id == account_id
                    )
                )
            ).first()
        return _delivery(row) if row else None

    async def replay(
        self, account_id: str, delivery_id: str, now: datetime
    ) -> WebhookDelivery | None:
        """Due now again with a fresh schedule and the same id; None while an attempt is in
        flight (or for an unknown id). The row counts its replays and keeps the last one's time."""
        async with self._db.write() as connection:
            row = (
                await connection.execute(
                    webhook_deliveries.update()
                    .where(
                        d.id == delivery_id,
                        d.account_id == account_id,
                        sa.or_(d.lease_until.is_(None), d.lease_until < now),
                    )
                    .values(
                        status=DeliveryState.PENDING.value,
                        attempts=0,
                        next_attempt_at=now,
                        delivered_at=None,
                        dead_at=None,
                        lease_owner=None,
                        lease_until=None,
                        replays=d.replays + 1,
                        replayed_at=now,
                    )
                    .returning(*webhook_deliveries.c)
                )
            ).first()
        return _delivery(row) if row else None
