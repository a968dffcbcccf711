"""The Shopify app end to end against the fake Shopify: install, tokens, webhooks, compliance."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from tests.e2e.conftest import eventually
from tests.e2e.shopify_app.conftest import API_SECRET, SHOP, Harness

from switchboard.automations import events as names
from switchboard.automations.events import Event
from switchboard.bootstrap import build_shopify
from switchboard.clock import FrozenClock
from switchboard.integrations.shopify import signing
from switchboard.storage.sql.tables import messages, shopify_shops, shopify_webhooks, verifications

PHONE = "+919876543210"


def order(order_id: int = 1001, **extra: object) -> dict[str, object]:
    return {
        "id": order_id, "name": f"#{order_id}", "order_number": order_id,
        "email": "Asha@Example.com", "phone": None, "checkout_token": "ck-1",
        "total_price": "49.00", "currency": "INR", "created_at": "2026-12-02T10:00:00+05:30",
        "customer": {"id": 77, "first_name": "Asha", "phone": PHONE,
                     "sms_marketing_consent": {"state": "subscribed"}},
        "billing_address": {"phone": "+14155550100", "country_code": "US"},
        **extra,
    }  # fmt: skip


async def processed(harness: Harness, webhook_id: str) -> None:
    async def done() -> bool:
        return await harness.status(webhook_id) == "DONE"

    await eventually(done)


async def test_install_links_the_shop_with_a_sealed_expiring_token(harness: Harness) -> None:
    response = await harness.install()
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"shop": SHOP, "customerId": harness.customer_id}
    # the code was traded for an expiring offline token
    assert harness.peer.token_requests[-1]["expiring"] == "1"
    shops = await harness.http.get(
        "/api/v1/integrations/shopify/shops", headers=harness.mc.headers()
    )
    [shop] = shops.json()["data"]["shops"]
    assert shop["installed"]
    assert shop["timezone"] == "Asia/Kolkata"
    access = next(iter(harness.peer.shops[SHOP].access_tokens))
    async with harness.container.database.read() as connection:
        row = (await connection.execute(sa.select(shopify_shops))).one()
    assert access not in row.access_token
    assert row.access_token.startswith("v1.")
    assert harness.peer.shops[SHOP].refresh_token not in row.refresh_token
    topics = {s["topic"] for s in harness.peer.shops[SHOP].subscriptions}
    assert {"ORDERS_CREATE", "CHECKOUTS_UPDATE", "APP_UNINSTALLED"} <= topics


async def test_install_without_a_genuine_link_is_refused(harness: Harness) -> None:
    response = await harness.http.get(
        "/integrations/shopify/install", params={"shop": SHOP, "link": "forged.link"}
    )
    assert response.status_code == 401
    other = harness.app.install_link(harness.customer_id, "other.myshopify.com")[0]
    response = await harness.http.get(other.replace(SHOP, SHOP).split("switchboard.test")[1])
    assert response.status_code in (302, 400)  # the other shop's own link still works
    bad = await harness.http.get(
        "/integrations/shopify/install",
        params={"shop": SHOP, "link": other.split("link=")[1]},
    )
    assert bad.status_code == 401  # a link for another shop


async def test_callback_with_a_forged_hmac_or_a_used_state_is_refused(harness: Harness) -> None:
    _, state = await harness.app.begin_install(
        SHOP, harness.app.install_link(harness.customer_id, SHOP)[0].split("link=")[1]
    )
    harness.http.cookies.set("switchboard_shopify_state", state, path="/integrations/shopify")
    params = harness.peer.callback_query(SHOP, state)
    forged = {**params, "shop": "evil.myshopify.com"}
    response = await harness.http.get("/integrations/shopify/callback", params=forged)
    assert response.status_code == 401
    wrong_host = {**params, "shop": "evil.example.com"}
    wrong_host["hmac"] = signing.query_hmac(API_SECRET, wrong_host)
    assert (
        await harness.http.get("/integrations/shopify/callback", params=wrong_host)
    ).status_code == 400
    first = await harness.http.get("/integrations/shopify/callback", params=params)
    assert first.status_code == 200, first.text
    harness.http.cookies.set("switchboard_shopify_state", state, path="/integrations/shopify")
    again = harness.peer.callback_query(SHOP, state)
    assert (
        await harness.http.get("/integrations/shopify/callback", params=again)
    ).status_code == 401


async def test_callback_from_another_browser_is_refused(harness: Harness) -> None:
    _, state = await harness.app.begin_install(
        SHOP, harness.app.install_link(harness.customer_id, SHOP)[0].split("link=")[1]
    )
    params = harness.peer.callback_query(SHOP, state)
    response = await harness.http.get("/integrations/shopify/callback", params=params)
    assert response.status_code == 401  # no state cookie: not the browser that started it


async def test_concurrent_token_use_near_expiry_refreshes_once(
    harness: Harness, clock: FrozenClock
) -> None:
    await harness.install()
    settings = harness.container.settings.integrations.shopify
    assert settings is not None
    # a second app on the same database: another process
    other = build_shopify(
        settings, harness.container.database, harness.container.vault, harness.sink,
        harness.container.personal_data, clock, harness.container.secrets,
    )  # fmt: skip
    try:
        clock.advance(56 * 60)  # within the 5-minute margin of the 1 h token
        harness.peer.refresh_delay_s = 0.2
        tokens = await asyncio.gather(*(app.access_token(SHOP) for app in [harness.app, other] * 5))
    finally:
        await other.close()
    assert harness.peer.refreshes == 1
    assert len(set(tokens)) == 1
    # the stored pair is the rotated one: the next refresh uses it and is accepted
    clock.advance(58 * 60)
    newer = await harness.app.access_token(SHOP)
    assert harness.peer.refreshes == 2
    assert newer != tokens[0]


async def test_forged_webhook_gets_401_and_is_not_stored(harness: Harness) -> None:
    await harness.install()
    webhook_id = str(uuid.uuid4())
    response = await harness.emit(
        "orders/create", order(), webhook_id=webhook_id, signature="Zm9yZ2Vk"
    )
    assert response.status_code == 401
    assert await harness.status(webhook_id) is None
    for topic in ("customers/redact", "shop/redact", "customers/data_request"):
        forged = await harness.emit(topic, {"shop_domain": SHOP}, signature="")
        assert forged.status_code == 401


async def test_order_maps_to_order_created_and_clears_its_checkout(harness: Harness) -> None:
    await harness.install()
    webhook_id = str(uuid.uuid4())
    response = await harness.emit("orders/create", order(), webhook_id=webhook_id)
    assert response.status_code == 200
    await processed(harness, webhook_id)
    [event] = harness.sink.published
    assert event.name == names.ORDER_CREATED
    assert event.phone == PHONE  # customer.phone: `phone` is empty
    assert event.consent is True
    assert event.timezone == "Asia/Kolkata"
    assert event.source == f"shopify:{SHOP}"
    assert event.account_id == harness.customer_id
    assert event.fields["order"]["name"] == "#1001"
    assert event.fields["customer"]["first_name"] == "Asha"
    assert harness.sink.cleared == [(harness.customer_id, "checkout:ck-1")]


async def test_retried_webhook_is_acted_on_once(harness: Harness) -> None:
    await harness.install()
    webhook_id = str(uuid.uuid4())
    for _ in range(3):
        assert (
            await harness.emit("orders/create", order(), webhook_id=webhook_id)
        ).status_code == 200
    await processed(harness, webhook_id)
    assert len(harness.sink.published) == 1


async def test_checkout_completed_clears_the_reminder_subject(harness: Harness) -> None:
    await harness.install()
    started = str(uuid.uuid4())
    checkout = {"token": "ck-9", "phone": PHONE, "abandoned_checkout_url": "https://x/r",
                "updated_at": "2026-12-02T10:00:00Z"}  # fmt: skip
    await harness.emit("checkouts/create", checkout, webhook_id=started)
    await processed(harness, started)
    completed = str(uuid.uuid4())
    await harness.emit(
        "checkouts/update", {**checkout, "completed_at": "2026-12-02T10:20:00Z"},
        webhook_id=completed,
    )  # fmt: skip
    await processed(harness, completed)
    assert [e.name for e in harness.sink.published] == [
        names.CHECKOUT_STARTED, names.CHECKOUT_COMPLETED,
    ]  # fmt: skip
    assert harness.sink.published[0].subject == "checkout:ck-9"
    assert harness.sink.published[0].fields["checkout_url"] == "https://x/r"
    assert (harness.customer_id, "checkout:ck-9") in harness.sink.cleared


async def test_uninstall_drops_the_tokens(harness: Harness) -> None:
    await harness.install()
    webhook_id = str(uuid.uuid4())
    await harness.emit("app/uninstalled", {"id": 1, "domain": SHOP}, webhook_id=webhook_id)
    await processed(harness, webhook_id)
    async with harness.container.database.read() as connection:
        row = (await connection.execute(sa.select(shopify_shops))).one()
    assert row.access_token is None
    assert row.refresh_token is None
    later = str(uuid.uuid4())
    await harness.emit("orders/create", order(), webhook_id=later)
    await processed(harness, later)
    assert harness.sink.published == []  # nothing acts for an uninstalled shop


async def _send_sms(harness: Harness, number: str, text: str) -> str:
    response = await harness.http.post(
        "/verification/v3/send",
        params={"countryCode": "91", "flowType": "SMS", "mobileNumber": number, "type": "SMS",
                "senderId": "UTOMOB", "message": text, "messageType": "TRANSACTIONAL"},
        headers=harness.mc.headers(),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["messageId"])


async def test_data_request_exports_the_customers_messages(harness: Harness) -> None:
    await harness.install()
    order_id = str(uuid.uuid4())
    await harness.emit("orders/create", order(), webhook_id=order_id)
    await processed(harness, order_id)
    await _send_sms(harness, PHONE[3:], "Your order #1001 is confirmed")
    await _send_sms(harness, "9123456789", "someone else")
    request_id = str(uuid.uuid4())
    await harness.emit(
        "customers/data_request",
        {"shop_id": 1, "shop_domain": SHOP, "orders_requested": [1001],
         "customer": {"id": 77, "email": "asha@example.com", "phone": None},
         "data_request": {"id": 9999}},
        webhook_id=request_id,
    )  # fmt: skip
    await processed(harness, request_id)
    exports = await harness.http.get(
        "/api/v1/integrations/shopify/data-exports", headers=harness.mc.headers()
    )
    [export] = exports.json()["data"]["exports"]
    assert export["dataRequestId"] == "9999"
    texts = [m["text"] for m in export["document"]["messages"]]
    assert texts == ["Your order #1001 is confirmed"]  # found by the phone its order carried
    # a later redact of that customer takes the export with it
    redact = str(uuid.uuid4())
    await harness.emit(
        "customers/redact",
        {"shop_id": 1, "shop_domain": SHOP, "customer": {"id": 77, "email": None, "phone": None}},
        webhook_id=redact,
    )
    await processed(harness, redact)
    assert await harness.app.exports(harness.customer_id) == []


async def test_customer_redact_erases_numbers_and_texts(harness: Harness) -> None:
    await harness.install()
    order_id = str(uuid.uuid4())
    await harness.emit("orders/create", order(), webhook_id=order_id)
    await processed(harness, order_id)
    mine = await _send_sms(harness, PHONE[3:], "Your order #1001 is confirmed")
    theirs = await _send_sms(harness, "9123456789", "someone else")
    otp = await harness.mc.send_otp(mobileNumber=PHONE[3:])
    assert otp.status_code == 200, otp.text
    redact = str(uuid.uuid4())
    await harness.emit(
        "customers/redact",
        {"shop_id": 1, "shop_domain": SHOP, "orders_to_redact": [1001],
         "customer": {"id": 77, "email": "asha@example.com", "phone": None}},
        webhook_id=redact,
    )  # fmt: skip
    await processed(harness, redact)
    async with harness.container.database.read() as connection:
        rows = {r.id: r for r in (await connection.execute(sa.select(messages))).all()}
        raw = json.dumps([str(tuple(r)) for r in rows.values()])
        checks = (await connection.execute(sa.select(verifications))).all()
    assert [(v.destination, v.mobile_number) for v in checks] == [("[redacted]", "[redacted]")]
    assert rows[mine].destination == "[redacted]"
    assert rows[mine].body == "[redacted]"
    assert rows[theirs].destination == "+919123456789"  # another person's stays
    assert PHONE not in raw
    assert "#1001 is confirmed" not in raw
    assert (harness.customer_id, PHONE, None) in harness.sink.forgotten
    assert (harness.customer_id, None, "asha@example.com") in harness.sink.forgotten


async def test_shop_redact_erases_the_shop_and_its_customers(harness: Harness) -> None:
    await harness.install()
    order_id = str(uuid.uuid4())
    await harness.emit("orders/create", order(), webhook_id=order_id)
    await processed(harness, order_id)
    mine = await _send_sms(harness, PHONE[3:], "Your order #1001 is confirmed")
    redact = str(uuid.uuid4())
    await harness.emit("shop/redact", {"shop_id": 1, "shop_domain": SHOP}, webhook_id=redact)

    async def gone() -> bool:
        return await harness.app._store.get_shop(SHOP) is None

    await eventually(gone)
    async with harness.container.database.read() as connection:
        row = (await connection.execute(sa.select(messages).where(messages.c.id == mine))).one()
    assert row.destination == "[redacted]"


async def test_a_refresh_token_near_its_end_is_renewed(
    harness: Harness, clock: FrozenClock
) -> None:
    await harness.install()
    assert await harness.app.renew_ageing_tokens() == 0  # 90 days left
    clock.advance(61 * 86400)
    assert await harness.app.renew_ageing_tokens() == 1
    assert harness.peer.refreshes == 1
    assert await harness.app.renew_ageing_tokens() == 0  # the rotated one has 90 days again


async def test_install_links_states_and_codes_stay_out_of_the_logs(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    response = await harness.install()
    assert response.status_code == 200
    logged = capsys.readouterr().out
    link = harness.app.install_link(harness.customer_id, SHOP)[0].split("link=")[1][:20]
    assert "path=/integrations/shopify/callback" in logged
    assert link not in logged
    assert "state=***" in logged
    assert "code=***" in logged
    for token in harness.peer.shops[SHOP].access_tokens:
        assert token not in logged


async def test_a_webhook_claimed_by_a_dead_worker_is_processed_after_its_lease(
    harness: Harness, clock: FrozenClock
) -> None:
    await harness.install()
    store = harness.app._store
    webhook_id = str(uuid.uuid4())
    body = json.dumps(order()).encode()
    # stored as due 30 s ahead, so that the live loop cannot take it before the dead worker does
    later = clock.now() + timedelta(seconds=30)
    assert await store.add_webhook(
        webhook_id=webhook_id, shop=SHOP, topic="orders/create", api_version=None,
        triggered_at=None, body=body, now=later,
    )  # fmt: skip
    # a worker leases it and dies before acting
    [claimed] = await store.claim_webhooks("dead-worker", later, later + timedelta(seconds=60), 5)
    assert claimed.webhook_id == webhook_id
    clock.advance(31)
    await asyncio.sleep(0.3)  # the live loop polls meanwhile: the lease keeps it away
    assert await harness.status(webhook_id) == "PENDING"
    assert harness.sink.published == []
    clock.advance(61)
    await processed(harness, webhook_id)
    assert [e.name for e in harness.sink.published] == [names.ORDER_CREATED]


async def test_a_failing_engine_call_is_retried_later(harness: Harness, clock: FrozenClock) -> None:
    await harness.install()
    calls = 0
    publish = harness.sink.publish

    async def flaky(event: Event) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("engine database away")
        return await publish(event)

    harness.sink.publish = flaky  # type: ignore[method-assign]
    webhook_id = str(uuid.uuid4())
    await harness.emit("orders/create", order(), webhook_id=webhook_id)

    async def tried() -> bool:
        return calls == 1

    await eventually(tried)
    assert await harness.status(webhook_id) == "PENDING"
    clock.advance(6)  # the first retry waits 5 s
    await processed(harness, webhook_id)
    assert len(harness.sink.published) == 1


async def test_concurrent_deliveries_of_one_webhook_store_it_once(harness: Harness) -> None:
    await harness.install()
    webhook_id = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(harness.emit("orders/create", order(), webhook_id=webhook_id) for _ in range(8))
    )
    assert [a.status_code for a in answers] == [200] * 8
    await processed(harness, webhook_id)
    async with harness.container.database.read() as connection:
        rows = (await connection.execute(sa.select(shopify_webhooks))).all()
    assert len(rows) == 1
    assert rows[0].body == ""  # customer data is not kept once acted on
    assert len(harness.sink.published) == 1
