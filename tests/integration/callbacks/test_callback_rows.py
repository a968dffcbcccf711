"""Delivery rows are part of the status change's transaction, and wake-ups follow its commit."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from tests.conftest import SettingsFactory

from switchboard.bootstrap import Container, build_container
from switchboard.callbacks.secrets import generate_secret
from switchboard.clock import FrozenClock
from switchboard.domain.messages import MessageStatus
from switchboard.storage.sql.callbacks import SqlCallbackEvents
from switchboard.storage.sql.engines import after_commit
from switchboard.storage.sql.tables import accounts, messages, webhook_deliveries


@pytest.fixture
async def store_only(
    make_settings: SettingsFactory, clock: FrozenClock
) -> AsyncIterator[Container]:
    built = build_container(make_settings(), clock=clock)
    await built.start(run_workers=False)
    await built.accounts.create_customer(
        email="dev@example.com", password="long enough", customer_id="C-1"
    )
    async with built.database.write() as connection:
        await connection.execute(
            accounts.update()
            .where(accounts.c.id == "C-1")
            .values(callback_url="https://hooks.example.com/dlr", callback_secret=generate_secret())
        )
    yield built
    await built.stop()


async def add_message(built: Container, clock: FrozenClock) -> str:
    message_id = str(uuid.uuid4())
    now = clock.now()
    async with built.database.write() as connection:
        await connection.execute(
            messages.insert().values(
                id=message_id, account_id="C-1", numeric_id=uuid.uuid4().int >> 66,
                transaction_id=str(uuid.uuid4()), channel="SMS", message_type="TRANSACTIONAL",
                lane=1, status=MessageStatus.SUBMITTED.value, country_code="91",
                destination="+919876543210", body="hello", created_at=now - timedelta(seconds=4),
                submitted_at=now - timedelta(seconds=4), updated_at=now,
            )
        )  # fmt: skip
    return message_id


async def deliver(
    built: Container, events: SqlCallbackEvents, message_id: str, clock: FrozenClock
) -> None:
    """What the queue does on a receipt: update the row, then call the listener, one transaction."""
    async with built.database.write() as connection:
        before = (
            await connection.execute(sa.select(messages).where(messages.c.id == message_id))
        ).one()
        await connection.execute(
            messages.update()
            .where(messages.c.id == message_id)
            .values(status=MessageStatus.DELIVERED.value, done_at=clock.now(), error_code="000")
        )
        await events.on_status(connection, before, MessageStatus.DELIVERED, clock.now(), "000")


async def delivery_rows(built: Container) -> list[tuple[str, str]]:
    query = sa.select(webhook_deliveries.c.message_id, webhook_deliveries.c.payload)
    async with built.database.read() as connection:
        return [(row.message_id, row.payload) for row in await connection.execute(query)]


async def fail_after_the_listener(
    built: Container, events: SqlCallbackEvents, message_id: str, clock: FrozenClock
) -> None:
    async with built.database.write() as connection:
        before = (
            await connection.execute(sa.select(messages).where(messages.c.id == message_id))
        ).one()
        await events.on_status(connection, before, MessageStatus.DELIVERED, clock.now(), None)
        raise RuntimeError("the status change failed")


async def test_a_rolled_back_status_change_leaves_no_delivery_and_wakes_nobody(
    store_only: Container, clock: FrozenClock
) -> None:
    wakes: list[str] = []
    events = SqlCallbackEvents(wake=lambda: wakes.append("wake"))
    message_id = await add_message(store_only, clock)

    with pytest.raises(RuntimeError, match="status change failed"):
        await fail_after_the_listener(store_only, events, message_id, clock)

    assert await delivery_rows(store_only) == []
    assert wakes == []


async def test_a_committed_status_change_has_its_delivery_and_wakes_once_after_commit(
    store_only: Container, clock: FrozenClock
) -> None:
    wakes: list[str] = []
    events = SqlCallbackEvents(wake=lambda: wakes.append("wake"))
    message_id = await add_message(store_only, clock)

    await deliver(store_only, events, message_id, clock)

    [(stored_for, payload)] = await delivery_rows(store_only)
    body = json.loads(payload)
    assert stored_for == message_id
    assert (body["messageId"], body["status"], body["mobile"]) == (
        message_id,
        "DELIVRD",
        "919876543210",
    )
    assert body["doneDate"] == clock.now().strftime("%Y-%m-%d %H:%M:%S")
    assert body["submitDate"] == (clock.now() - timedelta(seconds=4)).strftime("%Y-%m-%d %H:%M:%S")
    assert wakes == ["wake"]


async def test_an_endpoint_without_a_url_gets_no_rows(
    store_only: Container, clock: FrozenClock
) -> None:
    async with store_only.database.write() as connection:
        await connection.execute(accounts.update().values(callback_url=None))
    message_id = await add_message(store_only, clock)

    await deliver(store_only, SqlCallbackEvents(), message_id, clock)

    assert await delivery_rows(store_only) == []


async def test_after_commit_hooks_run_once_per_transaction_and_at_once_outside_one(
    store_only: Container,
) -> None:
    calls: list[str] = []

    def hook() -> None:
        calls.append("hook")

    async with store_only.database.write() as connection:
        after_commit(connection, hook)
        after_commit(connection, hook)
        assert calls == []
    async with store_only.database.read() as connection:
        after_commit(connection, hook)

    assert calls == ["hook", "hook"]


async def test_a_write_cancelled_mid_statement_ends_with_cancelled_error(
    store_only: Container,
) -> None:
    if store_only.database.is_sqlite:
        pytest.skip("aiosqlite cannot interrupt a statement; psycopg invalidates the connection")

    async def slow_write() -> None:
        async with store_only.database.write() as connection:
            await connection.execute(sa.text("SELECT pg_sleep(10)"))

    task = asyncio.create_task(slow_write())
    await asyncio.sleep(0.3)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)
    async with store_only.database.write() as connection:  # the pool recovers
        assert await connection.scalar(sa.text("SELECT 1")) == 1
