"""The daily message rollup: written in the transactions that change statuses, read by the dashboard.

Each status change adds to an in-transaction tally; just before the commit the tally becomes
one upsert per (account, day, channel, country, outcome), in key order so two transactions
never lock the same rows in opposite orders. A page view then reads at most a few hundred
rows, however many messages there are.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.domain.messages import MessageStatus
from switchboard.domain.verification import VerificationRecord, VerificationStatus
from switchboard.services.statistics import DailyCount
from switchboard.storage.sql.engines import Database, before_commit
from switchboard.storage.sql.queue import StatusListener
from switchboard.storage.sql.tables import message_stats_daily
from switchboard.storage.sql.verifications import VerificationListener

_OUTCOMES = {
    MessageStatus.SUBMITTED: "sent",
    MessageStatus.DELIVERED: "delivered",
    MessageStatus.UNDELIVERABLE: "failed",
    MessageStatus.EXPIRED: "failed",
    MessageStatus.REJECTED: "failed",
    MessageStatus.FAILED: "failed",
}
_Key = tuple[str, str, str, str, str]
s = message_stats_daily.c


def _text(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


class StatisticsRecorder(StatusListener, VerificationListener):
    """Tallies status changes and verified codes into `message_stats_daily` before each commit;
    verification ends go on to `inner` (the customer callbacks)."""

    def __init__(self, *, sqlite: bool, inner: VerificationListener | None = None) -> None:
        self._insert = sqlite_insert if sqlite else pg_insert
        self._inner = inner or VerificationListener()
        self._tallies: weakref.WeakKeyDictionary[AsyncConnection, Counter[_Key]] = (
            weakref.WeakKeyDictionary()
        )

    async def _add(self, connection: AsyncConnection, key: _Key) -> None:
        tally = self._tallies.get(connection)
        if tally is None:
            tally = self._tallies[connection] = Counter()
            await before_commit(connection, self._flush)
        tally[key] += 1

    async def on_status(
        self,
        connection: AsyncConnection,
        message: sa.Row[Any],
        status: MessageStatus,
        now: datetime,
        error_code: str | None,
    ) -> None:
        outcome = _OUTCOMES.get(status)
        if outcome is None:
            return
        day = now.date().isoformat()
        base = (message.account_id, day, _text(message.channel), message.country_code or "")
        await self._add(connection, (*base, outcome))
        if outcome == "sent" and message.verification_id is not None and message.step == 0:
            await self._add(connection, (*base, "otp_sent"))

    async def on_verification_ended(
        self, connection: AsyncConnection, record: VerificationRecord, now: datetime
    ) -> None:
        await self._count_verified(connection, [record], now)
        await self._inner.on_verification_ended(connection, record, now)

    async def on_verifications_ended(
        self, connection: AsyncConnection, records: Sequence[VerificationRecord], now: datetime
    ) -> None:
        await self._count_verified(connection, records, now)
        await self._inner.on_verifications_ended(connection, records, now)

    async def _count_verified(
        self, connection: AsyncConnection, records: Sequence[VerificationRecord], now: datetime
    ) -> None:
        day = now.date().isoformat()
        for record in records:
            if record.status is VerificationStatus.VERIFIED:
                key = (record.account_id, day, record.channel.value, record.country_code or "")
                await self._add(connection, (*key, "otp_verified"))

    async def _flush(self, connection: AsyncConnection) -> None:
        tally = self._tallies.pop(connection, None)
        if not tally:
            return
        for key in sorted(tally):
            account_id, day, channel, country, outcome = key
            statement = self._insert(message_stats_daily).values(
                account_id=account_id, day=day, channel=channel, country_code=country,
                outcome=outcome, count=tally[key],
            )  # fmt: skip
            await connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[s.account_id, s.day, s.channel, s.country_code, s.outcome],
                    set_={"count": s.count + statement.excluded.count},
                )
            )


class SqlStatistics:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def daily_counts(self, account_id: str, first: date, last: date) -> list[DailyCount]:
        async with self._db.read() as connection:
            rows = (
                await connection.execute(
                    sa.select(s.day, s.channel, s.country_code, s.outcome, s.count).where(
                        s.account_id == account_id,
                        s.day >= first.isoformat(),
                        s.day <= last.isoformat(),
                    )
                )
            ).all()
        return [DailyCount(r.day, r.channel, r.country_code, r.outcome, int(r[4])) for r in rows]
