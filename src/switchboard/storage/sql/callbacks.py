"""Customer callbacks in SQL: endpoint settings, delivery rows and their leases.

Delivery rows are written by `SqlCallbackEvents` inside the transaction that changes a message
or ends a verification, so an event is recorded exactly when its change commits. Workers claim
due rows under a lease (FOR UPDATE SKIP LOCKED on PostgreSQL, the single writer on SQLite),
send without a transaction open, and settle guarded by the lease owner.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.domain.callbacks import (
    ATTEMPT_HISTORY,
    MESSAGE_STATUS_EVENT,
    VERIFICATION_EVENTS,
    AttemptRecord,
    CallbackEndpoint,
    DeliveryState,
    DueDelivery,
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
from switchboard.storage.sql.queue import StatusListener
from switchboard.storage.sql.rows import verification_record
from switchboard.storage.sql.tables import accounts, messages, verifications, webhook_deliveries
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
    row = (
        await connection.execute(sa.select(*_ENDPOINT_COLUMNS).where(a.id == account_id))
    ).first()
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
        webhook_deliveries.insert().values(
            id=delivery_id,
            account_id=endpoint.account_id,
            event_type=event_type,
            message_id=message_id,
            verification_id=verification_id,
            url=endpoint.url,
            payload=encode_payload(payload).decode("ascii"),
            status=DeliveryState.PENDING.value,
            next_attempt_at=now,
            created_at=now,
        )
    )
    return delivery_id


class SqlCallbackEvents(StatusListener, VerificationListener):
    """Writes webhook rows inside the transactions that change messages and verifications.

    Every message status with a report name (DELIVRD …) becomes the spec's callback body for an
    account with an active endpoint; with the `verification` subscription, verifications that
    end and codes sent on a fallback channel become verification events. `wake` runs after
    the commit, so the dispatcher sees the row at once.
    """

    def __init__(self, wake: Callable[[], None] = lambda: None) -> None:
        self._wake = wake

    async def on_status(
        self,
        connection: AsyncConnection,
        message: sa.Row[Any],
        status: MessageStatus,
        now: datetime,
        error_code: str | None,
    ) -> None:
        report = status.report_name
        is_fallback = (
            status is MessageStatus.SUBMITTED
            and message.verification_id is not None
            and message.step > 0
        )
        if report is None and not is_fallback:
            return
        endpoint = await load_endpoint(connection, message.account_id)
        if endpoint is None or not endpoint.active:
            return
        # The row handed over was read before the update: read what this transaction wrote.
        fresh = (
            await connection.execute(sa.select(messages).where(messages.c.id == message.id))
        ).one()
        verification = None
        if fresh.verification_id is not None:
            found = (
                await connection.execute(
                    sa.select(verifications).where(verifications.c.id == fresh.verification_id)
                )
            ).first()
            verification = verification_record(found) if found else None
        if report is not None:
            await self._add_report(
                connection, endpoint, fresh, verification, report, now, error_code
            )
        if is_fallback and verification is not None and VERIFICATION_EVENTS in endpoint.events:
            plan = (verification.channel, *verification.fallback)
            previous = plan[min(fresh.step, len(plan)) - 1]
            await self._add_verification_event(
                connection, endpoint, verification, VerificationEventType.FALLBACK, now, now,
                channel=previous.value, next_channel=fresh.channel,
            )  # fmt: skip

    async def on_verification_ended(
        self, connection: AsyncConnection, record: VerificationRecord, now: datetime
    ) -> None:
        event_type = _VERIFICATION_EVENT_TYPES.get(record.status)
        if event_type is None:
            return
        endpoint = await load_endpoint(connection, record.account_id)
        if endpoint is None or not endpoint.active or VERIFICATION_EVENTS not in endpoint.events:
            return
        await self._add_verification_event(
            connection, endpoint, record, event_type, record.ended_at or now, now,
            channel=record.channel.value,
        )  # fmt: skip

    async def _add_report(
        self,
        connection: AsyncConnection,
        endpoint: CallbackEndpoint,
        message: sa.Row[Any],
        verification: VerificationRecord | None,
        report: str,
        now: datetime,
        error_code: str | None,
    ) -> None:
        country = message.country_code
        number = national_number(message.destination, country)
        if number is None and verification is not None:
            # an OTP e-mail: its verification still has the number it was started for
            country, number = verification.country_code, verification.mobile_number
        payload = delivery_payload(
            message_id=message.id,
            status=report,
            country_code=country,
            national_number=number,
            submitted_at=message.submitted_at or message.created_at,
            done_at=message.done_at or now,
            error_code=callback_error_code(error_code or message.error_code),
        )
        await add_delivery(
            connection, endpoint, event_type=MESSAGE_STATUS_EVENT, payload=payload, now=now,
            message_id=message.id,
        )  # fmt: skip
        after_commit(connection, self._wake)

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
        if not self._db.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        async with self._db.write() as connection:
            rows = (
                await connection.execute(
                    webhook_deliveries.update()
                    .where(d.id.in_(due.scalar_subquery()))
                    .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s))
                    .returning(d.id, d.account_id, d.payload, d.attempts, d.next_attempt_at)
                )
            ).all()
            if not rows:
                return []
            endpoints = {
                row.id: _endpoint(row)
                for row in await connection.execute(
                    sa.select(*_ENDPOINT_COLUMNS).where(a.id.in_({r.account_id for r in rows}))
                )
            }
        claimed = []
        for row in sorted(rows, key=lambda r: r.next_attempt_at):
            endpoint = endpoints[row.account_id]
            claimed.append(
                DueDelivery(
                    id=row.id,
                    account_id=row.account_id,
                    payload=row.payload.encode("ascii"),
                    attempts=row.attempts,
                    url=endpoint.url,
                    signing_secrets=endpoint.signing_secrets(now, self._overlap),
                    endpoint_disabled=endpoint.disabled_at is not None,
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

    async def settle(
        self,
        delivery_id: str,
        owner: str,
        attempt: AttemptRecord,
        *,
        state: DeliveryState,
        url: str,
        now: datetime,
        next_attempt_at: datetime | None = None,
        disable_endpoint: str | None = None,
    ) -> bool:
        """Record an attempt and what follows it; False when the lease was lost meanwhile.

        `disable_endpoint` (a reason) also disables the account's endpoint, e.g. after a 410.
        """
        async with self._db.write() as connection:
            row = (
                await connection.execute(
                    sa.select(d.account_id, d.recent_attempts).where(
                        d.id == delivery_id,
                        d.lease_owner == owner,
                        d.status == DeliveryState.PENDING.value,
                    )
                )
            ).first()
            if row is None:
                return False
            history = [*(row.recent_attempts or []), _attempt_values(attempt)]
            await connection.execute(
                webhook_deliveries.update()
                .where(d.id == delivery_id)
                .values(
                    status=state.value,
                    attempts=d.attempts + 1,
                    url=url,
                    last_status_code=attempt.status_code,
                    last_error=(attempt.error or "")[:_ERROR_CHARS] or None,
                    last_latency_ms=attempt.latency_ms,
                    recent_attempts=history[-ATTEMPT_HISTORY:],
                    lease_owner=None,
                    lease_until=None,
                    next_attempt_at=next_attempt_at if state is DeliveryState.PENDING else None,
                    delivered_at=now if state is DeliveryState.DELIVERED else None,
                    dead_at=now if state is DeliveryState.DEAD else None,
                )
            )
            if disable_endpoint is not None:
                await connection.execute(
                    accounts.update()
                    .where(a.id == row.account_id, a.callback_disabled_at.is_(None))
                    .values(
                        callback_disabled_at=now,
                        callback_disabled_reason=disable_endpoint[:_ERROR_CHARS],
                    )
                )
        return True

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
