"""CleverTap in SQL: the mids and settings, and the listener that queues its reports and replies.

The reports are rows of the webhook outbox (`webhook_deliveries`, event type
`clevertap.report`, the URL on the row): written in the transaction that gives a CleverTap
message its final status, sent by the webhook dispatcher many to a POST (ADR 0011).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.channels.base import InboundMessage
from switchboard.domain.callbacks import CLEVERTAP_REPORT_EVENT, DeliveryState, new_webhook_id
from switchboard.domain.messages import MessageStatus
from switchboard.errors import DuplicateResourceError
from switchboard.integrations.clevertap.reports import reply_report, status_report
from switchboard.integrations.clevertap.store import (
    CLIENT_REF_PREFIX,
    CleverTapSettings,
    EarlierRecord,
    QueuedMessage,
    SentRecord,
)
from switchboard.storage.sql.engines import Database, after_commit
from switchboard.storage.sql.queue import StatusListener
from switchboard.storage.sql.tables import (
    clevertap_messages,
    clevertap_reply_numbers,
    clevertap_settings,
    messages,
    webhook_deliveries,
)
from switchboard.storage.sql.transaction_buffer import TransactionBuffer

cm = clevertap_messages.c
cs = clevertap_settings.c
cr = clevertap_reply_numbers.c
d = webhook_deliveries.c
m = messages.c

_PENDING = DeliveryState.PENDING.value
_INSERT_REPORT = webhook_deliveries.insert().values(
    id=sa.bindparam("b_id"), account_id=sa.bindparam("b_account_id"),
    event_type=CLEVERTAP_REPORT_EVENT, message_id=sa.bindparam("b_message_id"),
    url=sa.bindparam("b_url"), payload=sa.bindparam("b_payload"), status=_PENDING,
    next_attempt_at=sa.bindparam("b_now"), created_at=sa.bindparam("b_now"),
)  # fmt: skip
_TARGETS = (
    sa.select(cm.ref, cm.account_id, cm.mid, cs.callback_url)
    .join(clevertap_settings, cs.account_id == cm.account_id)
    .where(cm.ref.in_(sa.bindparam("b_refs", expanding=True)), cs.callback_url.is_not(None))
)


# A reply to our number: whose number it is, where its CleverTap reports go, and the newest
# CleverTap message of that customer to the replying number (its mid becomes `meta`).
_REPLY_TARGET = (
    sa.select(cr.account_id, cs.callback_url)
    .join(clevertap_settings, cs.account_id == cr.account_id)
    .where(cr.number == sa.bindparam("b_number"), cs.callback_url.is_not(None))
)
_LAST_SENT = (
    sa.select(cm.mid)
    .where(cm.account_id == sa.bindparam("b_account_id"), cm.destination == sa.bindparam("b_to"))
    .order_by(cm.created_at.desc())
    .limit(1)
)


# The record holding a mid, and what its message answered.
_HOLDER = sa.select(
    cm.ref, cm.mid, cm.mid_digest, cm.created_at, cm.message_id,
    m.numeric_id, m.transaction_id, m.destination, m.country_code,
).select_from(clevertap_messages.outerjoin(messages, m.id == cm.message_id))  # fmt: skip
_HOLDERS = _HOLDER.where(
    cm.account_id == sa.bindparam("b_account_id"),
    cm.mid_digest.in_(sa.bindparam("b_digests", expanding=True)),
)
_SETTLE = (
    clevertap_messages.update()
    .where(cm.ref == sa.bindparam("b_ref"))
    .values(message_id=sa.bindparam("b_message_id"))
)
_QUEUED_WITHIN = timedelta(minutes=15)


def mid_digest(mid: str) -> str:
    """The indexed form of a mid (migration 0017 fills it the same way)."""
    return hashlib.sha256(mid.encode()).hexdigest()


def _earlier(row: Any) -> EarlierRecord:
    message = None
    if row.message_id is not None:
        national = None
        if row.destination is not None:
            national = row.destination.removeprefix("+").removeprefix(row.country_code)
        message = QueuedMessage(
            message_id=row.message_id, verification_id=row.numeric_id,
            transaction_id=row.transaction_id, mobile_number=national,
        )  # fmt: skip
    return EarlierRecord(ref=row.ref, created_at=row.created_at, message=message)


def _settings(row: Any, numbers: Sequence[str]) -> CleverTapSettings:
    return CleverTapSettings(
        account_id=row.account_id,
        callback_url=row.callback_url,
        default_country_code=row.default_country_code,
        reply_numbers=tuple(sorted(numbers)),
    )


def _digits(number: str) -> str:
    return number.strip().removeprefix("+")


class SqlCleverTapStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def get_settings(self, account_id: str) -> CleverTapSettings | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(clevertap_settings).where(cs.account_id == account_id)
                )
            ).first()
            if row is None:
                return None
            numbers = await connection.scalars(
                sa.select(cr.number).where(cr.account_id == account_id)
            )
            return _settings(row, list(numbers))

    async def save_settings(self, settings: CleverTapSettings, now: datetime) -> None:
        values = {
            "account_id": settings.account_id,
            "callback_url": settings.callback_url,
            "default_country_code": settings.default_country_code,
            "updated_at": now,
        }
        insert = sqlite_insert if self._db.is_sqlite else pg_insert
        statement = insert(clevertap_settings).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[cs.account_id],
            set_={k: statement.excluded[k] for k in values if k != "account_id"},
        )
        pending = sa.and_(
            d.account_id == settings.account_id,
            d.event_type == CLEVERTAP_REPORT_EVENT,
            d.status == _PENDING,
        )
        async with self._db.write() as connection:
            await connection.execute(statement)
            await self._save_numbers(connection, settings)
            if settings.callback_url is not None:
                await connection.execute(
                    webhook_deliveries.update().where(pending).values(url=settings.callback_url)
                )
            else:
                await connection.execute(
                    webhook_deliveries.update()
                    .where(pending)
                    .values(
                        status=DeliveryState.DEAD.value, dead_at=now, next_attempt_at=None,
                        lease_owner=None, lease_until=None,
                        last_error="the CleverTap callback URL was removed",
                    )
                )  # fmt: skip

    async def _save_numbers(self, connection: AsyncConnection, settings: CleverTapSettings) -> None:
        numbers = sorted(set(settings.reply_numbers))
        await connection.execute(
            clevertap_reply_numbers.delete().where(cr.account_id == settings.account_id)
        )
        if not numbers:
            return
        # Another customer's numbers are invisible under row-level security, but the primary
        # key still holds across accounts: a number that does not go in belongs to someone else
        # (the transaction rolls back with the error).
        dialect = sqlite if connection.dialect.name == "sqlite" else postgresql
        inserted = await connection.scalars(
            dialect.insert(clevertap_reply_numbers)
            .values([{"number": n, "account_id": settings.account_id} for n in numbers])
            .on_conflict_do_nothing()
            .returning(cr.number)
        )
        if clash := sorted(set(numbers) - set(inserted)):
            raise DuplicateResourceError(f"reply number {clash[0]} belongs to another customer")

    async def remember(self, records: Sequence[SentRecord]) -> dict[str, EarlierRecord | None]:
        if not records:
            return {}
        rows = sorted(
            (
                {
                    "ref": r.ref, "account_id": r.account_id, "mid": r.mid,
                    "mid_digest": mid_digest(r.mid), "clevertap_account": r.clevertap_account,
                    "destination": r.destination, "created_at": r.created_at,
                }
                for r in records
            ),
            # one order for every writer: two batches sharing mids never wait on each other
            key=lambda row: (row["account_id"], row["mid_digest"]),
        )  # fmt: skip
        insert = sqlite_insert if self._db.is_sqlite else pg_insert
        statement = insert(clevertap_messages).on_conflict_do_nothing(
            index_elements=[cm.account_id, cm.mid_digest]
        )
        async with self._db.write() as connection:
            await connection.execute(statement, rows)
            holders = await self._holders(
                connection, records[0].account_id, [r.mid for r in records]
            )
        return {
            r.ref: holders.get(r.mid)
            for r in records
            if r.mid not in holders or holders[r.mid].ref != r.ref
        }

    async def earlier(self, account_id: str, mids: Sequence[str]) -> dict[str, EarlierRecord]:
        if not mids:
            return {}
        async with self._db.read() as connection:
            return await self._holders(connection, account_id, mids)

    async def _holders(
        self, connection: AsyncConnection, account_id: str, mids: Sequence[str]
    ) -> dict[str, EarlierRecord]:
        by_digest = {mid_digest(mid): mid for mid in mids}
        rows = await connection.execute(
            _HOLDERS, {"b_account_id": account_id, "b_digests": sorted(by_digest)}
        )
        return {
            by_digest[row.mid_digest]: _earlier(row)
            for row in rows
            if row.mid == by_digest[row.mid_digest]
        }

    async def settle(self, queued: Sequence[tuple[str, str]]) -> None:
        if not queued:
            return
        async with self._db.write() as connection:
            await connection.execute(
                _SETTLE, [{"b_ref": ref, "b_message_id": message_id} for ref, message_id in queued]
            )

    async def recover(self, account_id: str, ref: str) -> EarlierRecord | None:
        async with self._db.write() as connection:
            row = (
                await connection.execute(
                    sa.select(cm.message_id, cm.created_at).where(
                        cm.ref == ref, cm.account_id == account_id
                    )
                )
            ).first()
            if row is None:
                return None
            message_id = row.message_id or await connection.scalar(
                sa.select(m.id).where(
                    m.account_id == account_id,
                    m.client_ref == CLIENT_REF_PREFIX + ref,
                    # the message is queued right after its record: this bounds the scan
                    m.created_at.between(
                        row.created_at - _QUEUED_WITHIN, row.created_at + _QUEUED_WITHIN
                    ),
                )
            )
            if message_id is None:
                await connection.execute(
                    clevertap_messages.delete().where(cm.ref == ref, cm.message_id.is_(None))
                )
                return None
            await connection.execute(_SETTLE, {"b_ref": ref, "b_message_id": message_id})
            found = (await connection.execute(_HOLDER.where(cm.ref == ref))).first()
        return _earlier(found) if found is not None else None

    async def forget(self, refs: Sequence[str]) -> None:
        if not refs:
            return
        async with self._db.write() as connection:
            await connection.execute(
                clevertap_messages.delete().where(cm.ref.in_(list(refs)), cm.message_id.is_(None))
            )


@dataclass(frozen=True, slots=True)
class _Final:
    ref: str
    message_id: str
    account_id: str
    status: MessageStatus
    error_code: str | None
    at: datetime


class SqlCleverTapReports(StatusListener):
    """Queues a CleverTap report for each CleverTap message that reaches a final status.

    The message row tells: its client_ref carries the CleverTap prefix. Other messages cost a
    string comparison and nothing else; CleverTap's are written together just before the
    transaction commits (one read, one insert for a receipt batch).
    """

    def __init__(self, wake: Callable[[], None] = lambda: None) -> None:
        self._wake = wake
        self._finals = TransactionBuffer(self._write_reports)

    async def on_status(
        self,
        connection: AsyncConnection,
        message: sa.Row[Any],
        status: MessageStatus,
        now: datetime,
        error_code: str | None,
    ) -> None:
        ref = message.client_ref
        if ref is None or not ref.startswith(CLIENT_REF_PREFIX) or not status.is_final:
            return
        await self._finals.add(
            connection,
            _Final(
                ref.removeprefix(CLIENT_REF_PREFIX), message.id, message.account_id, status,
                error_code or message.error_code, now,
            ),
        )  # fmt: skip

    async def _write_reports(self, connection: AsyncConnection, finals: list[_Final]) -> None:
        targets = {
            row.ref: row
            for row in await connection.execute(
                _TARGETS, {"b_refs": sorted({f.ref for f in finals})}
            )
        }
        values = []
        for final in finals:
            target = targets.get(final.ref)
            # the account check: a client_ref is the customer's to choose on MessageNow
            if target is None or target.account_id != final.account_id:
                continue
            report = status_report(final.status, target.mid, final.at, final.error_code)
            values.append(
                {
                    "b_id": new_webhook_id(), "b_account_id": final.account_id,
                    "b_message_id": final.message_id, "b_url": target.callback_url,
                    "b_payload": json.dumps(report, separators=(",", ":")), "b_now": final.at,
                }
            )  # fmt: skip
        if values:
            await connection.execute(_INSERT_REPORT, values)
            after_commit(connection, self._wake)

    async def on_inbound(self, connection: AsyncConnection, inbound: InboundMessage) -> None:
        """A message to one of a customer's reply numbers: a `replied` report, with the mid of
        the newest CleverTap message to its sender as `meta` (none sent: nothing to attribute
        it to, and CleverTap requires `meta`, so it is not forwarded)."""
        target = (
            await connection.execute(_REPLY_TARGET, {"b_number": _digits(inbound.destination)})
        ).first()
        if target is None:
            return
        mid = await connection.scalar(
            _LAST_SENT, {"b_account_id": target.account_id, "b_to": _digits(inbound.source)}
        )
        if mid is None:
            return
        report = reply_report(mid, inbound.received_at, inbound.destination, inbound.text)
        await connection.execute(
            _INSERT_REPORT,
            {
                "b_id": new_webhook_id(), "b_account_id": target.account_id,
                "b_message_id": None, "b_url": target.callback_url,
                "b_payload": json.dumps(report, separators=(",", ":")),
                "b_now": inbound.received_at,
            },
        )  # fmt: skip
        after_commit(connection, self._wake)
