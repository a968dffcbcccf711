"""CleverTap in SQL: the mids and settings, and the listener that queues its delivery reports.

The reports are rows of the webhook outbox (`webhook_deliveries`, event type
`clevertap.report`, the URL on the row): written in the transaction that gives a CleverTap
message its final status, sent by the webhook dispatcher many to a POST (ADR 0011).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.domain.callbacks import CLEVERTAP_REPORT_EVENT, DeliveryState, new_webhook_id
from switchboard.domain.messages import MessageStatus
from switchboard.integrations.clevertap.reports import status_report
from switchboard.integrations.clevertap.store import (
    CLIENT_REF_PREFIX,
    CleverTapSettings,
    SentRecord,
)
from switchboard.storage.sql.engines import Database, after_commit, before_commit
from switchboard.storage.sql.queue import StatusListener
from switchboard.storage.sql.tables import (
    clevertap_messages,
    clevertap_settings,
    webhook_deliveries,
)

cm = clevertap_messages.c
cs = clevertap_settings.c
d = webhook_deliveries.c

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


def _settings(row: Any) -> CleverTapSettings:
    return CleverTapSettings(
        account_id=row.account_id,
        callback_url=row.callback_url,
        default_country_code=row.default_country_code,
    )


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
        return _settings(row) if row else None

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

    async def remember(self, records: Sequence[SentRecord]) -> None:
        if not records:
            return
        async with self._db.write() as connection:
            await connection.execute(
                clevertap_messages.insert(),
                [
                    {
                        "ref": r.ref, "account_id": r.account_id, "mid": r.mid,
                        "clevertap_account": r.clevertap_account, "created_at": r.created_at,
                    }
                    for r in records
                ],
            )  # fmt: skip

    async def forget(self, refs: Sequence[str]) -> None:
        if not refs:
            return
        async with self._db.write() as connection:
            await connection.execute(clevertap_messages.delete().where(cm.ref.in_(list(refs))))


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
        self._finals: weakref.WeakKeyDictionary[AsyncConnection, list[_Final]] = (
            weakref.WeakKeyDictionary()
        )

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
        self._finals.setdefault(connection, []).append(
            _Final(
                ref.removeprefix(CLIENT_REF_PREFIX), message.id, message.account_id, status,
                error_code or message.error_code, now,
            )
        )  # fmt: skip
        await before_commit(connection, self._write_reports)

    async def _write_reports(self, connection: AsyncConnection) -> None:
        finals = self._finals.pop(connection, [])
        if not finals:
            return
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
