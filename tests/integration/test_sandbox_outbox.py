"""The sandbox carrier's outbox: entries written together, each one kept, the oldest trimmed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from switchboard.channels.sandbox import OutboxEntry
from switchboard.domain.messages import Channel
from switchboard.storage.sql import migrate
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.sandbox import SqlOutbox


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    migrate.upgrade(database_url)
    db = Database(database_url)
    yield db
    await db.dispose()


def entry(n: int) -> OutboxEntry:
    return OutboxEntry(
        account_id="acme", message_id=f"m-{n}", channel=Channel.SMS,
        destination=f"+9198000{n:05d}", sender="ACME", text=f"message {n}",
        sent_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
    )  # fmt: skip


async def test_concurrent_records_are_all_kept_until_the_limit_trims_the_oldest(
    database: Database,
) -> None:
    outbox = SqlOutbox(database, limit=150)
    await asyncio.gather(*(outbox.record(entry(n)) for n in range(120)))
    kept = await outbox.entries("acme", limit=1000)
    assert sorted(e["message_id"] for e in kept) == sorted(f"m-{n}" for n in range(120))
    for n in range(120, 420):
        await outbox.record(entry(n))
    kept = await outbox.entries("acme", limit=1000)
    ids = [int(e["message_id"].removeprefix("m-")) for e in kept]
    assert ids[-1] == 419  # newest last
    assert 150 <= len(ids) <= 250  # trimmed at every hundredth row to the newest 150
    assert ids == sorted(ids)
    assert ids == list(range(420 - len(ids), 420))
