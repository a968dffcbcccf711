"""Callback retries under a frozen clock: recovery, the three-day schedule, dead letter and replay,
410, redirects, timeouts, SSRF refusals and isolation between endpoints."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from tests.e2e.callbacks.conftest import (
    ClientFactory,
    ContainerFactory,
    advance,
    assert_signed_by,
    list_deliveries,
    send_otp,
    set_callback,
    wait_for_delivery,
)
from tests.e2e.conftest import eventually

from switchboard.bootstrap import Container
from switchboard.callbacks.secrets import generate_secret
from switchboard.clock import FrozenClock
from switchboard.storage.sql.tables import accounts
from switchboard.testing.callback_receiver import Receivers, answer, answers, stall
from switchboard.testing.client import MessageCentralClient

NOMINAL = [
    timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
    timedelta(hours=5), timedelta(hours=10), timedelta(hours=14), timedelta(hours=20),
    timedelta(hours=24),
]  # fmt: skip


def attempts_made(count: int) -> Any:
    return lambda delivery: delivery["attempts"] == count


def advance_to_next_attempt(
    container: Container, clock: FrozenClock, delivery: dict[str, Any]
) -> None:
    due = datetime.fromisoformat(delivery["nextAttemptAt"])
    advance(container, clock, max(0.0, (due - clock.now()).total_seconds()))


async def test_a_receiver_that_fails_for_a_while_gets_the_delivery_once_it_recovers(
    mc: MessageCentralClient, container: Container, clock: FrozenClock, receivers: Receivers
) -> None:
    receiver = await receivers.start(answers([500, 503, 429, 502]))
    secret = (await set_callback(mc, receiver.url()))["secret"]
    message_id = await send_otp(mc)
    [first] = await receiver.wait_for_requests(1)
    delivery_id = first.headers["webhook-id"]

    for made in range(1, 5):
        delivery = await wait_for_delivery(mc, delivery_id, attempts_made(made))
        assert delivery["status"] == "PENDING"
        advance_to_next_attempt(container, clock, delivery)
        await receiver.wait_for_requests(made + 1)
    final = await wait_for_delivery(mc, delivery_id, lambda d: d["status"] == "DELIVERED")

    assert final["attempts"] == 5
    assert [a["statusCode"] for a in final["recentAttempts"]] == [500, 503, 429, 502, 200]
    assert final["payload"]["messageId"] == message_id
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery_id}
    assert {r.body for r in receiver.requests} == {first.body}
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.requests]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 5
    for request in receiver.requests:
        assert_signed_by(request, secret)


async def test_ten_attempts_over_about_three_days_then_dead_letter_then_replay_delivers(
    mc: MessageCentralClient, container: Container, clock: FrozenClock, receivers: Receivers
) -> None:
    receiver = await receivers.start(answer(500))
    await set_callback(mc, receiver.url())
    await send_otp(mc)
    [first] = await receiver.wait_for_requests(1)
    delivery_id = first.headers["webhook-id"]
    waited = timedelta(0)

    for made in range(1, 10):
        delivery = await wait_for_delivery(mc, delivery_id, attempts_made(made))
        attempted_at = datetime.fromisoformat(delivery["recentAttempts"][-1]["at"])
        delay = datetime.fromisoformat(delivery["nextAttemptAt"]) - attempted_at
        nominal = NOMINAL[made - 1]
        assert nominal * 0.9 <= delay <= nominal * 1.1, (made, delay)
        waited += delay
        advance_to_next_attempt(container, clock, delivery)
        await receiver.wait_for_requests(made + 1)
    dead = await wait_for_delivery(mc, delivery_id, lambda d: d["status"] == "DEAD")
    advance(container, clock, 7 * 86400)
    await asyncio.sleep(0.3)

    assert timedelta(hours=68) < waited < timedelta(hours=84)
    assert len(receiver.requests) == 10  # and no eleventh
    assert dead["attempts"] == 10
    assert dead["deadAt"] is not None
    assert dead["nextAttemptAt"] is None
    assert [a["attempt"] for a in dead["recentAttempts"]] == [6, 7, 8, 9, 10]
    assert dead["lastStatusCode"] == 500
    assert [d["id"] for d in await list_deliveries(mc, status="DEAD")] == [delivery_id]

    receiver.handler = answer(200)
    replay = await mc.http.post(
        f"/api/v1/callbacks/deliveries/{delivery_id}/replay", headers=mc.headers()
    )
    [*_, again] = await receiver.wait_for_requests(11)
    replayed = await wait_for_delivery(mc, delivery_id, lambda d: d["status"] == "DELIVERED")

    assert replay.json()["data"]["status"] == "PENDING"
    assert again.headers["webhook-id"] == delivery_id
    assert again.body == first.body
    assert int(again.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert (replayed["replays"], replayed["attempts"], replayed["lastStatusCode"]) == (1, 1, 200)


async def test_gone_disables_the_endpoint_until_its_url_is_set_again(
    mc: MessageCentralClient, receivers: Receivers
) -> None:
    receiver = await receivers.start(answer(410))
    await set_callback(mc, receiver.url())
    await send_otp(mc, "9876543210")
    [first] = await receiver.wait_for_requests(1)
    delivery_id = first.headers["webhook-id"]
    dead = await wait_for_delivery(mc, delivery_id, lambda d: d["status"] == "DEAD")
    shown = (await mc.http.get("/api/v1/callbacks", headers=mc.headers())).json()["data"]

    later = await send_otp(mc, "9876543211")

    async def delivered() -> bool:
        view = await mc.http.get(f"/api/v1/messages/{later}", headers=mc.headers())
        return bool(view.json()["data"]["status"] == "DELIVERED")

    await eventually(delivered)
    assert (dead["attempts"], dead["lastStatusCode"]) == (1, 410)
    assert shown["enabled"] is False
    assert "410" in shown["disabledReason"]
    assert [d["id"] for d in await list_deliveries(mc)] == [delivery_id]  # nothing new queued

    receiver.handler = answer(200)
    assert (await set_callback(mc, receiver.url()))["enabled"] is True
    await mc.http.post(f"/api/v1/callbacks/deliveries/{delivery_id}/replay", headers=mc.headers())
    await wait_for_delivery(mc, delivery_id, lambda d: d["status"] == "DELIVERED")


async def test_a_redirect_is_a_failure_and_is_never_followed(
    mc: MessageCentralClient, receivers: Receivers
) -> None:
    target = await receivers.start(answer(200))
    redirector = await receivers.start(answer(307, headers=[("Location", target.url())]))
    await set_callback(mc, redirector.url())
    await send_otp(mc)
    [request] = await redirector.wait_for_requests(1)

    delivery = await wait_for_delivery(
        mc, request.headers["webhook-id"], lambda d: d["attempts"] == 1
    )

    assert (delivery["status"], delivery["lastStatusCode"]) == ("PENDING", 307)
    assert delivery["lastError"] == f"HTTP 307: redirect to {target.url()} not followed"
    assert target.connections == 0


async def test_a_receiver_slower_than_the_total_timeout_is_retried(
    mc: MessageCentralClient, receivers: Receivers
) -> None:
    receiver = await receivers.start(stall(30))
    await set_callback(mc, receiver.url())
    await send_otp(mc)
    [request] = await receiver.wait_for_requests(1)

    delivery = await wait_for_delivery(
        mc, request.headers["webhook-id"], lambda d: d["attempts"] == 1
    )

    assert delivery["status"] == "PENDING"
    assert delivery["lastStatusCode"] is None
    assert delivery["lastError"] == "timeout: no answer within 1.0 s"
    assert 900 <= delivery["lastLatencyMs"] < 3000
    retry_in = datetime.fromisoformat(delivery["nextAttemptAt"]) - datetime.fromisoformat(
        delivery["recentAttempts"][0]["at"]
    )
    assert timedelta(seconds=4.5) <= retry_in <= timedelta(seconds=5.5)


async def test_an_address_outside_the_policy_is_refused_at_delivery_before_any_connection(
    start_container: ContainerFactory, api_for: ClientFactory, receivers: Receivers
) -> None:
    # No allow-list: 127.0.0.1 is private (http and any port are allowed here, so the address
    # is what refuses). The URL was stored while the operator still allowed it; every delivery
    # checks the policy again.
    built = await start_container(
        webhooks={"allow_networks": [], "require_https": False, "allowed_ports": []}
    )
    mc = await api_for(built)
    receiver = await receivers.start(answer(200))
    refused = await mc.http.put(
        "/api/v1/callbacks", json={"url": receiver.url()}, headers=mc.headers()
    )
    async with built.database.write() as connection:
        await connection.execute(
            accounts.update()
            .where(accounts.c.id == mc.customer_id)
            .values(callback_url=receiver.url(), callback_secret=generate_secret())
        )

    await send_otp(mc)

    async def attempted() -> bool:
        return any(d["attempts"] == 1 for d in await list_deliveries(mc))

    await eventually(attempted)
    [delivery] = await list_deliveries(mc)
    assert refused.json()["responseCode"] == 400
    assert delivery["status"] == "PENDING"
    assert delivery["lastError"].startswith("refused: 127.0.0.1 is not a public address")
    assert receiver.connections == 0


async def test_https_is_required_for_public_addresses(
    start_container: ContainerFactory, api_for: ClientFactory
) -> None:
    built = await start_container(webhooks={"allow_networks": []})
    mc = await api_for(built)

    response = await mc.http.put(
        "/api/v1/callbacks", json={"url": "http://93.184.215.14/hook"}, headers=mc.headers()
    )
    port = await mc.http.put(
        "/api/v1/callbacks", json={"url": "https://93.184.215.14:9000/hook"}, headers=mc.headers()
    )

    assert "only https URLs" in response.json()["errorMessage"]
    assert "port 9000 is not allowed" in port.json()["errorMessage"]


async def test_a_slow_endpoint_does_not_delay_another_customers_callbacks(
    start_container: ContainerFactory, api_for: ClientFactory, receivers: Receivers
) -> None:
    built = await start_container(webhooks={"total_timeout_s": 5.0})
    slow_customer = await api_for(built, "C-SLOW")
    fast_customer = await api_for(built, "C-FAST")
    slow = await receivers.start(stall(30))
    fast = await receivers.start(answer(200))
    await set_callback(slow_customer, slow.url())
    await set_callback(fast_customer, fast.url())

    for n in range(6):
        await send_otp(slow_customer, f"98765432{n:02d}")
    await slow.wait_for_requests(4)
    await asyncio.sleep(0.3)
    in_flight_for_slow = len(slow.requests)
    started = asyncio.get_running_loop().time()
    await send_otp(fast_customer, "9876543299")
    await fast.wait_for_requests(1, timeout_s=4.0)  # well before the slow POSTs time out

    assert in_flight_for_slow == 4  # the per-endpoint cap; two wait in the table
    assert asyncio.get_running_loop().time() - started < 2.0
    waiting = await list_deliveries(slow_customer, status="PENDING")
    assert len(waiting) == 6
    assert all(d["attempts"] == 0 for d in waiting)
