"""Staged campaign rows, inserted at the driver, are the rows SQLAlchemy's insert would store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from switchboard.bootstrap import Container
from switchboard.domain.campaigns import CampaignRecord
from switchboard.domain.messages import Channel, MessageRecord, MessageStatus, MessageType
from switchboard.storage.sql.messaging import SqlMessagingStore
from switchboard.storage.sql.tables import messages

NOW = datetime(2026, 11, 25, 17, 30, 5, 123456, tzinfo=UTC)


def _message(index: int, **changes: Any) -> MessageRecord:
    record = MessageRecord(
        id=f"00000000-0000-4000-8000-{index:012d}",
        numeric_id=10**17 + index,
        transaction_id="t-1",
        account_id="C-STAGE",
        channel=Channel.SMS,
        message_type=MessageType.PROMOTIONAL,
        status=MessageStatus.HELD,
        destination=f"+9198000{index:05d}",
        country_code="91",
        sender="SWBOARD",
        body=f"Hello ##{index}## ü € 😀",
        created_at=NOW + timedelta(microseconds=index),
        encoding="UCS2",
        segments=1 + index % 3,
        campaign_id="camp-1",
        dlt_entity_id="E1" if index % 2 else None,
        not_before=(NOW + timedelta(hours=3)).astimezone(),
    )
    return replace(record, **changes)


async def _stored(container: Container, ids: list[str]) -> list[dict[str, Any]]:
    async with container.database.read() as connection:
        rows = (
            await connection.execute(
                sa.select(messages).where(messages.c.id.in_(ids)).order_by(messages.c.numeric_id)
            )
        ).all()
    return [
        {k: v for k, v in row._mapping.items() if k not in ("id", "numeric_id")} for row in rows
    ]


async def test_staged_rows_equal_what_the_sqlalchemy_insert_stores(container: Container) -> None:
    await container.accounts.create_customer(
        email="stage@example.com", password="password-1", customer_id="C-STAGE"
    )
    store = SqlMessagingStore(container.database, container.queue)
    await store.create_campaign(
        CampaignRecord(
            id="camp-1", numeric_id=1, transaction_id="t-1", account_id="C-STAGE",
            status="STAGING", channel="SMS", message_type="PROMOTIONAL", source="FILE",
            sender="SWBOARD", template="x", total=0, invalid=0, errors=[], scheduled_at=None,
            created_at=NOW, updated_at=NOW,
        )
    )  # fmt: skip
    staged = [_message(i) for i in range(5)]
    await store.stage_campaign_messages(staged)
    reference = [_message(i, id=f"10000000-0000-4000-8000-{i:012d}", numeric_id=2 * 10**17 + i)
                 for i in range(5)]  # fmt: skip
    async with container.database.write() as connection:
        await container.queue.enqueue(connection, reference)
    assert await _stored(container, [m.id for m in staged]) == await _stored(
        container, [m.id for m in reference]
    )


async def test_a_refused_batch_stores_none_of_its_rows(container: Container) -> None:
    await container.accounts.create_customer(
        email="stage@example.com", password="password-1", customer_id="C-STAGE"
    )
    store = SqlMessagingStore(container.database, container.queue)
    first = _message(1)
    await store.stage_campaign_messages([first])
    with pytest.raises(sa.exc.IntegrityError):
        await store.stage_campaign_messages([_message(2), replace(first, numeric_id=7)])
    assert len(await _stored(container, [_message(2).id])) == 0
