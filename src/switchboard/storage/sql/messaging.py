"""SQL persistence for MessageNow: single messages, campaigns staged then released, reports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.domain.campaigns import CampaignRecord
from switchboard.domain.messages import MessageRecord, MessageStatus
from switchboard.errors import DuplicateResourceError, InvalidRequestError
from switchboard.storage.sql.batches import Batches, Waiting
from switchboard.storage.sql.charges import MessageCharges
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.queue import SqlMessageQueue
from switchboard.storage.sql.rows import MESSAGE_COLUMNS, message_record, message_rows
from switchboard.storage.sql.tables import campaigns, messages

c = campaigns.c
m = messages.c

# Built from the table's own column names, never from input.
_COLUMN_LIST = ", ".join(MESSAGE_COLUMNS)
_PLACEHOLDERS = ", ".join("?" for _ in MESSAGE_COLUMNS)
_SQLITE_INSERT = f"INSERT INTO messages ({_COLUMN_LIST}) VALUES ({_PLACEHOLDERS})"  # noqa: S608
# PostgreSQL refuses COPY FROM into a table under row-level security (migration 0016), so the
# rows are copied into a temporary table of this connection, then moved by one INSERT … SELECT
# that the policies check; the DELETE … RETURNING leaves the staging table empty for the next batch.
_POSTGRES_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS messages_incoming (LIKE messages) ON COMMIT DELETE ROWS"
)
_POSTGRES_COPY = f"COPY messages_incoming ({_COLUMN_LIST}) FROM STDIN"
_POSTGRES_MOVE = (
    f"WITH moved AS (DELETE FROM messages_incoming RETURNING {_COLUMN_LIST}) "  # noqa: S608
    f"INSERT INTO messages ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM moved"
)


def _campaign(row: sa.Row[Any]) -> CampaignRecord:
    return CampaignRecord(
        **{k: v for k, v in row._mapping.items() if k in CampaignRecord.__slots__}
    )


class _Accept(Waiting[None]):
    __slots__ = ("messages",)

    def __init__(self, messages: Sequence[MessageRecord]) -> None:
        super().__init__()
        self.messages = messages


class SqlMessagingStore:
    def __init__(
        self,
        database: Database,
        queue: SqlMessageQueue,
        *,
        charges: MessageCharges | None = None,
    ) -> None:
        self._db = database
        self._queue = queue
        self._charges = charges or MessageCharges()
        # Single sends arriving together share a transaction (group commit). With billing,
        # one request per transaction: a wallet refusal must refuse that request only.
        self._accepts: Batches[_Accept] = Batches(
            self._accept_batch, key=id, max_size=1 if charges else 256, name="message-accepts"
        )

    async def accept_messages(self, batch: Sequence[MessageRecord]) -> None:
        """Queue `batch` (one request's messages): all of them or, on an error, none."""
        item = _Accept(batch)
        await self._accepts.submit(item)
        item.done.result()

    async def _accept_batch(self, items: list[_Accept]) -> None:
        async with self._db.write() as connection:
            batch = [message for item in items for message in item.messages]
            batch = list(await self._charges.on_accept(connection, batch))
            await self._queue.enqueue(connection, batch)
        for item in items:
            item.succeed(None)

    async def create_campaign(self, campaign: CampaignRecord) -> None:
        try:
            async with self._db.write() as connection:
                await connection.execute(
                    campaigns.insert().values(
                        {name: getattr(campaign, name) for name in CampaignRecord.__slots__}
                    )
                )
        except IntegrityError:
            # the console chooses the id; a reused one must be the caller's error, not a 500
            async with self._db.read() as connection:
                taken = await connection.scalar(sa.select(c.id).where(c.id == campaign.id))
            if taken is None:
                raise
            raise DuplicateResourceError(
                f"campaignId {campaign.id} is already taken: choose a new one"
            ) from None

    async def stage_campaign_messages(self, batch: Sequence[MessageRecord]) -> None:
        """Insert a batch of a campaign's messages as HELD: none goes out before release.

        The rows are those `SqlMessageQueue.enqueue` would insert, handed to the driver in
        one call (sqlite3 `executemany`, PostgreSQL `COPY`) inside the same transaction:
        SQLAlchemy's per-row parameter handling was a third of a campaign's ingest time.
        """
        async with self._db.write() as connection:
            batch = await self._charges.on_accept(connection, batch)
            if batch:
                await _insert_messages(connection, batch)

    async def release_campaign(
        self,
        campaign_id: str,
        *,
        total: int,
        invalid: int,
        errors: list[dict[str, Any]],
        not_before: datetime,
        now: datetime,
    ) -> None:
        async with self._db.write() as connection:
            claimed = await connection.execute(
                campaigns.update()
                .where(c.id == campaign_id, c.status == "STAGING")
                .values(
                    status="ACCEPTED", total=total, invalid=invalid, errors=errors, updated_at=now
                )
            )
            if claimed.rowcount != 1:
                raise InvalidRequestError(
                    "the upload was abandoned while it was being read; nothing was sent, "
                    "please upload it again"
                )
            await connection.execute(
                messages.update()
                .where(m.campaign_id == campaign_id, m.status == MessageStatus.HELD.value)
                .values(status=MessageStatus.QUEUED.value, not_before=not_before)
            )

    async def abort_campaign(self, campaign_id: str, reason: str, now: datetime) -> None:
        """A campaign refused while staging: its held messages were never accepted."""
        async with self._db.write() as connection:
            await self._charges.on_cancelled(
                connection, now, campaign_id=campaign_id, reason=f"campaign refused: {reason}"
            )
            await connection.execute(
                messages.delete().where(
                    m.campaign_id == campaign_id, m.status == MessageStatus.HELD.value
                )
            )
            await connection.execute(
                campaigns.update()
                .where(c.id == campaign_id)
                .values(status="REJECTED", errors=[{"reason": reason}], updated_at=now)
            )

    async def stale_campaigns(self, idle_since: datetime, limit: int = 100) -> list[str]:
        last_staged = (
            sa.select(sa.func.max(m.created_at))
            .where(m.campaign_id == c.id)
            .correlate(campaigns)
            .scalar_subquery()
        )
        async with self._db.read() as connection:
            rows = await connection.execute(
                sa.select(c.id)
                .where(
                    c.status == "STAGING",
                    c.created_at < idle_since,
                    sa.or_(last_staged.is_(None), last_staged < idle_since),
                )
                .order_by(c.created_at)
                .limit(limit)
            )
            return [str(row.id) for row in rows]

    async def get_campaign(self, account_id: str, campaign_id: str) -> CampaignRecord | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(campaigns).where(c.id == campaign_id, c.account_id == account_id)
                )
            ).first()
        return _campaign(row) if row else None

    async def campaign_counts(self, campaign_id: str) -> dict[str, int]:
        async with self._db.read() as connection:
            rows = (
                await connection.execute(
                    sa.select(m.status, sa.func.count())
                    .where(m.campaign_id == campaign_id)
                    .group_by(m.status)
                )
            ).all()
        return {str(status): int(count) for status, count in rows}

    async def campaign_messages(
        self, account_id: str, campaign_id: str, *, page_size: int = 5000
    ) -> AsyncIterator[MessageRecord]:
        """Every message of a campaign in creation order, read in pages (flat memory)."""
        after = ""
        while True:
            async with self._db.read() as connection:
                rows = (
                    await connection.execute(
                        sa.select(messages)
                        .where(
                            m.campaign_id == campaign_id, m.account_id == account_id, m.id > after
                        )
                        .order_by(m.id)
                        .limit(page_size)
                    )
                ).all()
            for row in rows:
                yield message_record(row)
            if len(rows) < page_size:
                return
            after = rows[-1].id

    async def cancel_campaign(self, account_id: str, campaign_id: str, now: datetime) -> int:
        async with self._db.write() as connection:
            cancelled = (
                await connection.execute(
                    messages.update()
                    .where(
                        m.campaign_id == campaign_id,
                        m.account_id == account_id,
                        m.status.in_([MessageStatus.QUEUED.value, MessageStatus.HELD.value]),
                    )
                    .values(status=MessageStatus.CANCELLED.value, done_at=now, updated_at=now)
                )
            ).rowcount
            if cancelled:
                await self._charges.on_cancelled(
                    connection, now, campaign_id=campaign_id, reason="campaign cancelled"
                )
            await connection.execute(
                campaigns.update()
                .where(c.id == campaign_id, c.account_id == account_id)
                .values(status="CANCELLED", updated_at=now)
            )
        return int(cancelled or 0)


async def _insert_messages(connection: AsyncConnection, batch: Sequence[MessageRecord]) -> None:
    rows = message_rows(batch, connection.dialect)
    if connection.dialect.name == "sqlite":
        await connection.exec_driver_sql(_SQLITE_INSERT, rows)
        return
    # The pooled psycopg connection under this SQLAlchemy connection, in its transaction.
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    statement = _POSTGRES_STAGING
    try:
        async with driver.cursor() as cursor:
            await cursor.execute(_POSTGRES_STAGING)
            statement = _POSTGRES_COPY
            async with cursor.copy(_POSTGRES_COPY) as copy:
                for row in rows:
                    await copy.write_row(row)
            statement = _POSTGRES_MOVE
            await cursor.execute(_POSTGRES_MOVE)
    except psycopg.Error as error:
        # The error SQLAlchemy would have raised (IntegrityError for a duplicate, …).
        raise sa.exc.DBAPIError.instance(statement, None, error, psycopg.Error) from error
