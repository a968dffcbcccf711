"""The callback dispatcher over real rows and loopback receivers: batches, slots, isolation."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import SettingsFactory, stop_while_claiming
from tests.e2e.conftest import eventually

from switchboard.bootstrap import Container, build_container
from switchboard.callbacks.secrets import generate_secret
from switchboard.clock import FrozenClock
from switchboard.storage.sql.tables import accounts, webhook_deliveries
from switchboard.testing.callback_receiver import (
    ReceivedRequest,
    Receivers,
    answer,
    respond,
    stall,
)

d = webhook_deliveries.c


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    started = Receivers()
    yield started
    await started.stop_all()


async def start(make_settings: SettingsFactory, clock: FrozenClock, **webhooks: Any) -> Container:
    settings = make_settings(
        webhooks={"allow_networks": ["127.0.0.1/32"], "total_timeout_s": 30.0, **webhooks}
    )
    built = build_container(settings, clock=clock)
    await built.start(run_workers=False)
    return built


async def queue(built: Container, clock: FrozenClock, customer: str, url: str, count: int) -> None:
    """A customer whose endpoint is `url`, with `count` deliveries due now."""
    await built.accounts.create_customer(
        email=f"{customer.lower()}@example.com", password="long enough", customer_id=customer
    )
    now = clock.now()
    async with built.database.write() as connection:
        await connection.execute(
            accounts.update()
            .where(accounts.c.id == customer)
            .values(callback_url=url, callback_secret=generate_secret())
        )
        await connection.execute(
            webhook_deliveries.insert(),
            [
                {"id": f"msg_{uuid.uuid4().hex}", "account_id": customer,
                 "event_type": "message.status", "url": url, "payload": f'{{"n":{n}}}',
                 "status": "PENDING", "next_attempt_at": now, "created_at": now}
                for n in range(count)
            ],
        )  # fmt: skip


@contextlib.asynccontextmanager
async def dispatching(built: Container) -> AsyncIterator[None]:
    task = asyncio.create_task(built.webhooks.run())
    try:
        yield
    finally:
        await built.webhooks.stop(0.5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await built.stop()


async def test_a_backlog_is_sent_once_each_and_settled_with_one_attempt_in_its_history(
    make_settings: SettingsFactory, clock: FrozenClock, receivers: Receivers
) -> None:
    receiver = await receivers.start(answer(200))
    built = await start(make_settings, clock, batch_size=20, max_concurrency_per_endpoint=3)
    await queue(built, clock, "C-1", receiver.url(), 150)

    async with dispatching(built):
        await receiver.wait_for_requests(150)

        async def all_settled() -> bool:
            async with built.database.read() as connection:
                rows = (
                    await connection.execute(
                        sa.select(d.status, d.attempts, d.recent_attempts, d.lease_owner)
                    )
                ).all()
            return all(row.status == "DELIVERED" for row in rows)

        await eventually(all_settled)

    async with built.database.read() as connection:
        rows = (await connection.execute(sa.select(d.attempts, d.recent_attempts))).all()
    ids = [request.headers["webhook-id"] for request in receiver.requests]
    assert len(ids) == len(set(ids)) == 150
    assert {row.attempts for row in rows} == {1}
    assert {len(row.recent_attempts) for row in rows} == {1}
    assert receiver.connections <= 3  # kept alive: a connection per slot, not per POST


async def test_a_hanging_endpoint_with_a_backlog_does_not_hold_back_another(
    make_settings: SettingsFactory, clock: FrozenClock, receivers: Receivers
) -> None:
    hanging = await receivers.start(stall(30))
    fast = await receivers.start(answer(200))
    built = await start(
        make_settings, clock, batch_size=50, max_in_flight=6, max_concurrency_per_endpoint=3
    )
    await queue(built, clock, "C-HANG", hanging.url(), 100)

    async with dispatching(built):
        await hanging.wait_for_requests(3)
        await queue(built, clock, "C-FAST", fast.url(), 20)
        built.webhooks.wake()
        await fast.wait_for_requests(20, timeout_s=5)

    assert len(hanging.requests) == 3


async def test_a_row_whose_lease_ran_out_in_flight_is_not_sent_again_by_its_holder(
    make_settings: SettingsFactory, clock: FrozenClock, receivers: Receivers
) -> None:
    async def slow_ok(request: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.3)
        await respond(writer, 200)

    receiver = await receivers.start(slow_ok)
    built = await start(make_settings, clock, total_timeout_s=5.0)
    await queue(built, clock, "C-1", receiver.url(), 1)
    try:
        assert await built.webhooks.claim() == 1
        await receiver.wait_for_requests(1)
        clock.advance(120)  # the lease (total timeout + 30 s) runs out while the POST waits
        assert await built.webhooks.claim() == 1  # the row comes back from the table …
        await built.webhooks.stop(2)  # … and is not sent a second time

        async with built.database.read() as connection:
            row = (await connection.execute(sa.select(d.status, d.attempts))).one()
        assert len(receiver.requests) == 1
        assert (row.status, row.attempts) == ("DELIVERED", 1)
    finally:
        await built.stop()


async def test_a_stop_waits_for_the_claim_under_way_and_settles_what_it_claimed(
    make_settings: SettingsFactory, clock: FrozenClock, receivers: Receivers
) -> None:
    receiver = await receivers.start(answer(200))
    built = await start(make_settings, clock)
    await queue(built, clock, "C-1", receiver.url(), 1)
    try:
        webhooks = built.webhooks
        await stop_while_claiming(built.database, "webhook_deliveries", webhooks.run, webhooks.stop)
        async with built.database.read() as connection:
            row = (await connection.execute(sa.select(d.status, d.lease_owner))).one()
        assert len(receiver.requests) == 1
        assert (row.status, row.lease_owner) == ("DELIVERED", None)
    finally:
        await built.stop()


async def test_a_stop_that_comes_before_the_run_is_kept(
    make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    built = await start(make_settings, clock)
    try:
        await built.webhooks.stop(1)
        await asyncio.wait_for(built.webhooks.run(), 5)  # ends at once, claims nothing
    finally:
        await built.stop()
