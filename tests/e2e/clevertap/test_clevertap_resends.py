"""A CleverTap resend of a mid (its answer was lost) answers the first message, never a second SMS."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from tests.e2e.callbacks.conftest import ClientFactory, ContainerFactory
from tests.e2e.clevertap.conftest import sender_for
from tests.e2e.conftest import eventually

from switchboard.bootstrap import Container
from switchboard.clock import FrozenClock
from switchboard.integrations.clevertap.service import STALE_AFTER, WAIT_S
from switchboard.integrations.clevertap.store import SentRecord
from switchboard.storage.sql.clevertap import SqlCleverTapStore
from switchboard.storage.sql.tables import clevertap_messages, messages
from switchboard.testing.clevertap_peer import SPEC_TEMPLATE, CleverTapMessage, new_message_id
from switchboard.testing.client import MessageCentralClient

pytestmark = pytest.mark.usefixtures("database_url")

_SAME = ("messageId", "verificationId", "transactionId", "mobileNumber", "mid")


async def _messages_to(container: Container, destination: str) -> int:
    async with container.database.read() as connection:
        count = await connection.scalar(
            sa.select(sa.func.count())
            .select_from(messages)
            .where(messages.c.destination == destination)
        )
    return int(count or 0)


async def test_a_resend_of_a_mid_answers_the_first_message_and_sends_nothing_more(
    start_container: ContainerFactory, api_for: ClientFactory
) -> None:
    container = await start_container()
    mc = await api_for(container)
    message = CleverTapMessage(to="919876543210", body="Your order ships", message_id="m-17")

    first = await sender_for(mc).send(message)
    again = await sender_for(mc).send(message)

    assert first.status_code == again.status_code == 200, again.json()
    assert {k: again.json()["data"][k] for k in _SAME} == {
        k: first.json()["data"][k] for k in _SAME
    }
    await eventually(lambda: _outbox_count(mc, 1))
    assert await _messages_to(container, "+919876543210") == 1


async def test_ten_concurrent_copies_of_one_mid_queue_one_message(
    start_container: ContainerFactory, api_for: ClientFactory
) -> None:
    container = await start_container()
    mc = await api_for(container)
    message = CleverTapMessage(to="919876543210", body="Flash sale", message_id=new_message_id())

    answers = await asyncio.gather(*(sender_for(mc).send(message) for _ in range(10)))

    assert [a.status_code for a in answers] == [200] * 10, [a.json() for a in answers]
    assert len({a.json()["data"]["messageId"] for a in answers}) == 1
    assert await _messages_to(container, "+919876543210") == 1
    await eventually(lambda: _outbox_count(mc, 1))


async def test_a_mid_repeated_in_one_batch_is_sent_once_and_answered_twice(
    start_container: ContainerFactory, api_for: ClientFactory
) -> None:
    container = await start_container()
    mc = await api_for(container)
    message = CleverTapMessage(to="919876543210", body="Hello", message_id="m-dup")
    other = CleverTapMessage(to="919876543211", body="Hello", message_id="m-other")

    sent = await sender_for(mc, batch_key="msgs").send_batch([message, other, message])

    results = sent.json()["data"]["results"]
    assert [r["responseCode"] for r in results] == [200, 200, 200]
    assert results[0]["messageId"] == results[2]["messageId"] != results[1]["messageId"]
    assert await _messages_to(container, "+919876543210") == 1


async def test_the_same_mid_from_two_customers_sends_both(
    start_container: ContainerFactory, api_for: ClientFactory
) -> None:
    container = await start_container()
    one = await api_for(container)
    two = await api_for(container, "C-2")
    message = CleverTapMessage(to="919876543210", body="Hi", message_id="m-shared")

    first = await sender_for(one).send(message)
    second = await sender_for(two).send(message)

    assert first.status_code == second.status_code == 200
    assert first.json()["data"]["messageId"] != second.json()["data"]["messageId"]
    assert await _messages_to(container, "+919876543210") == 2


async def test_a_refused_record_does_not_hold_its_mid(
    start_container: ContainerFactory, api_for: ClientFactory
) -> None:
    container = await start_container()
    mc = await api_for(container)

    bad_sender = sender_for(mc, template={**SPEC_TEMPLATE, "senderId": "no-such!"})
    refused = await bad_sender.send(
        CleverTapMessage(to="919876543210", body="Hi", message_id="m-5")
    )
    fixed = await sender_for(mc).send(
        CleverTapMessage(to="919876543210", body="Hi", message_id="m-5")
    )

    assert refused.status_code == 400, refused.json()
    assert fixed.status_code == 200, fixed.json()
    assert await _messages_to(container, "+919876543210") == 1


async def test_a_record_left_without_its_message_by_a_dead_process_is_sent_on_a_resend(
    start_container: ContainerFactory, api_for: ClientFactory, clock: FrozenClock
) -> None:
    container = await start_container()
    mc = await api_for(container)
    # what a process that died between storing the record and queuing its message leaves
    left = await SqlCleverTapStore(container.database).remember(
        [
            SentRecord(
                ref="0" * 32, account_id=mc.customer_id, mid="m-9", clevertap_account=None,
                destination="919876543210", created_at=clock.now(),
            )
        ]
    )  # fmt: skip
    assert left == {}
    clock.advance((STALE_AFTER + timedelta(seconds=1)).total_seconds())

    resent = await sender_for(mc).send(
        CleverTapMessage(to="919876543210", body="Hi", message_id="m-9")
    )

    assert resent.status_code == 200, resent.json()
    assert await _messages_to(container, "+919876543210") == 1
    async with container.database.read() as connection:
        [row] = (
            await connection.execute(
                sa.select(clevertap_messages.c.ref, clevertap_messages.c.message_id)
            )
        ).all()
    assert row.message_id == resent.json()["data"]["messageId"]


async def test_a_resend_while_the_first_record_is_still_being_queued_is_409_and_sends_nothing(
    start_container: ContainerFactory, api_for: ClientFactory, clock: FrozenClock
) -> None:
    container = await start_container()
    mc = await api_for(container)
    # another process has just stored the record and is queuing its message
    await SqlCleverTapStore(container.database).remember(
        [
            SentRecord(
                ref="1" * 32, account_id=mc.customer_id, mid="m-7", clevertap_account=None,
                destination="919876543210", created_at=clock.now(),
            )
        ]
    )  # fmt: skip

    started = asyncio.get_running_loop().time()
    resent = await sender_for(mc).send(
        CleverTapMessage(to="919876543210", body="Hi", message_id="m-7")
    )
    waited = asyncio.get_running_loop().time() - started

    assert resent.status_code == 409, resent.json()
    body = resent.json()
    assert body["responseCode"] == 409
    assert (
        body["errorMessage"] == "a message with this mid is still being queued; send it again later"
    )
    assert waited >= WAIT_S  # it waited for the first copy's message before answering
    assert await _messages_to(container, "+919876543210") == 0


async def _outbox_count(mc: MessageCentralClient, count: int) -> bool:
    return len(await mc.outbox()) == count
