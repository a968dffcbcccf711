"""CleverTap as a Generic (Others) SMS provider: the spec's endpoint, credentials, batches, reports."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.e2e.callbacks.conftest import (
    ClientFactory,
    ContainerFactory,
    advance,
    list_deliveries,
    set_callback,
)
from tests.e2e.clevertap.conftest import sender_for, set_clevertap
from tests.e2e.conftest import PASSWORD, eventually

from switchboard.channels.base import InboundMessage
from switchboard.clock import FrozenClock
from switchboard.domain.messages import Channel
from switchboard.integrations.clevertap.api import SEND_PATH
from switchboard.testing.callback_receiver import Receivers, answer
from switchboard.testing.clevertap_peer import (
    CleverTapMessage,
    CleverTapReceiver,
    new_message_id,
)

pytestmark = pytest.mark.usefixtures("database_url")


async def test_spec_template_sends_the_sms_and_reports_delivered_with_the_verbatim_mid(
    start_container: ContainerFactory,
    api_for: ClientFactory,
    clevertap: CleverTapReceiver,
    receivers: Receivers,
) -> None:
    container = await start_container()
    mc = await api_for(container)
    assert (await set_clevertap(mc, callbackUrl=clevertap.url())).status_code == 200
    own = await receivers.start(answer(200))
    await set_callback(mc, own.url())
    mid = new_message_id(padding=300)
    assert len(mid) >= 300

    sent = await sender_for(mc).send(
        CleverTapMessage(to="919876543210", body="Your order A-17 ships today", message_id=mid)
    )

    assert sent.status_code == 200, sent.json()
    data = sent.json()["data"]
    assert data["mid"] == mid
    assert data["mobileNumber"] == "9876543210"
    assert data["messageId"]
    assert data["status"] == "QUEUED"
    [report] = await clevertap.wait_for_reports(1)
    assert report.event == "delivered"
    assert report.meta == mid
    assert abs(report.record["ts"] - int(container.clock.now().timestamp())) < 60
    # CleverTap documents no signature: our reports carry none of the webhook-* headers
    assert not any(name.startswith("webhook-") for name in clevertap.requests[0].headers)
    assert clevertap.requests[0].headers["content-type"] == "application/json"
    [entry] = await mc.outbox()
    assert (entry["destination"], entry["text"]) == ("+919876543210", "Your order A-17 ships today")
    # the spec's own signed callback goes to the customer's URL as well
    [callback] = await own.wait_for_requests(1)
    assert callback.json()["messageId"] == data["messageId"]
    assert callback.json()["status"] == "DELIVRD"
    assert "webhook-signature" in callback.headers


async def test_a_batch_answers_each_record_and_bad_records_do_not_refuse_the_rest(
    start_container: ContainerFactory, api_for: ClientFactory, clevertap: CleverTapReceiver
) -> None:
    container = await start_container()
    mc = await api_for(container)
    await set_clevertap(mc, callbackUrl=clevertap.url())
    messages = [
        CleverTapMessage(to="+919876543210", body="one"),
        CleverTapMessage(to="9876543211", body="two"),  # national: the default country (91)
        CleverTapMessage(to="12", body="three"),
        CleverTapMessage(to="919876543212", body="four", message_id=""),
    ]

    sent = await sender_for(mc, batch_key="msgs").send_batch(messages)

    assert sent.status_code == 200, sent.json()
    data = sent.json()["data"]
    assert (data["total"], data["accepted"], data["failed"]) == (4, 2, 2)
    results = data["results"]
    assert [r["responseCode"] for r in results] == [200, 200, 400, 400]
    assert [r["mid"] for r in results[:3]] == [m.message_id for m in messages[:3]]
    assert "mobileNumber '12'" in results[2]["errorMessage"]
    assert results[3]["errorMessage"] == "missing key: mid"
    assert results[1]["mobileNumber"] == "9876543211"
    reports = await clevertap.wait_for_reports(2)
    assert sorted(r.meta for r in reports) == sorted(m.message_id for m in messages[:2])
    assert {r.event for r in reports} == {"delivered"}


async def test_a_json_array_and_shared_keys_of_a_batch_object_are_accepted(
    start_container: ContainerFactory, api_for: ClientFactory
) -> None:
    container = await start_container()
    mc = await api_for(container)
    array = await sender_for(mc, array=True).send_batch(
        [
            CleverTapMessage(to="919876543210", body="a"),
            CleverTapMessage(to="919876543211", body="b"),
        ]
    )
    assert array.json()["data"]["accepted"] == 2
    shared = await mc.http.post(
        SEND_PATH,
        json={"senderId": "ACMEIN", "messageType": "PROMOTIONAL",
              "messages": [{"mobileNumber": "919876543213", "messageText": "c", "mid": "m-1"}]},
        headers={"customerId": mc.customer_id, "email": "c-1@example.com", "password": PASSWORD},
    )  # fmt: skip
    assert shared.status_code == 200, shared.json()
    [result] = shared.json()["data"]["results"]
    message = await mc.http.get(f"/api/v1/messages/{result['messageId']}", headers=mc.headers())
    assert message.json()["data"]["messageType"] == "PROMOTIONAL"


async def test_every_credential_failure_gets_the_same_501_and_keys_work_as_password_or_bearer(
    start_container: ContainerFactory, api_for: ClientFactory
) -> None:
    container = await start_container()
    mc = await api_for(container)
    record = {"mobileNumber": "919876543210", "messageText": "hi", "senderId": "UTOMOB", "mid": "x"}
    good = {"customerId": "C-1", "email": "c-1@example.com", "password": PASSWORD}
    failures = [
        {**good, "password": "wrong password"},
        {**good, "customerId": "C-404"},
        {**good, "email": "someone@example.com"},
        {**good, "password": "sbk_" + "A" * 43},
        {"Authorization": "Bearer sbk_" + "A" * 43},
        {},
    ]
    bodies = []
    for headers in failures:
        refused = await mc.http.post(SEND_PATH, json=record, headers=headers)
        assert refused.status_code == 401
        bodies.append(refused.json())
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["responseCode"] == 501
    created = await mc.http.post(
        "/api/v1/integration-keys", json={"name": "CleverTap"}, headers=mc.headers()
    )
    key = created.json()["data"]["key"]
    as_password = await mc.http.post(SEND_PATH, json=record, headers={**good, "password": key})
    as_bearer = await mc.http.post(
        SEND_PATH, json=record, headers={"Authorization": f"Bearer {key}"}
    )
    assert as_password.status_code == 200, as_password.json()
    assert as_bearer.status_code == 200, as_bearer.json()


async def test_missing_keys_bad_json_and_oversized_batches_are_400_naming_the_problem(
    start_container: ContainerFactory, api_for: ClientFactory
) -> None:
    container = await start_container(clevertap={"max_records": 3})
    mc = await api_for(container)
    headers = {"customerId": "C-1", "email": "c-1@example.com", "password": PASSWORD}

    async def post(**kwargs: Any) -> tuple[int, str]:
        response = await mc.http.post(SEND_PATH, headers=headers, **kwargs)
        return response.status_code, str(response.json().get("errorMessage"))

    assert await post(json={"mobileNumber": "919876543210", "messageText": "hi"}) == (
        400, "missing key: mid",
    )  # fmt: skip
    assert await post(json={"messageText": "hi", "mid": "m"}) == (400, "missing key: mobileNumber")
    assert await post(content=b"{not json") == (400, "the body is not valid JSON")
    record = {"mobileNumber": "919876543210", "messageText": "hi", "mid": "m"}
    assert (await post(json=[record] * 4))[0] == 400
    assert (await post(json=[]))[1] == "the batch holds no records"
    status, message = await post(json={**record, "flowType": "WHATSAPP"})
    assert (status, message) == (400, "flowType must be SMS on this endpoint, not 'WHATSAPP'")


async def test_a_failing_clevertap_gets_the_reports_again_batched_and_once_each(
    start_container: ContainerFactory,
    api_for: ClientFactory,
    clevertap: CleverTapReceiver,
    clock: FrozenClock,
) -> None:
    container = await start_container()
    mc = await api_for(container)
    await set_clevertap(mc, callbackUrl=clevertap.url())
    clevertap.fail_next(1000, status=503)
    messages = [CleverTapMessage(to=f"91987654321{i}", body=f"n{i}") for i in range(3)]
    sent = await sender_for(mc).send_batch(messages)
    assert sent.json()["data"]["accepted"] == 3

    async def all_attempted_once() -> bool:
        rows = await list_deliveries(mc)
        reports = [r for r in rows if r["eventType"] == "clevertap.report"]
        return len(reports) == 3 and all(r["attempts"] == 1 for r in reports)

    await eventually(all_attempted_once)
    assert clevertap.reports == []
    clevertap.recover()
    advance(container, clock, 10)  # past the 5 s retry (±10 %)

    reports = await clevertap.wait_for_reports(3)
    assert sorted(r.meta for r in reports) == sorted(m.message_id for m in messages)
    assert len(clevertap.posts[-1]) == 3  # the three due reports shared one POST
    advance(container, clock, 3600)
    await eventually(lambda: _settled(mc))
    assert len(clevertap.reports) == 3  # CleverTap does not dedupe: nothing was sent twice


async def _settled(mc: Any) -> bool:
    rows = await list_deliveries(mc)
    return all(r["status"] == "DELIVERED" for r in rows if r["eventType"] == "clevertap.report")


async def test_records_clevertap_refuses_are_dead_lettered_not_retried(
    start_container: ContainerFactory,
    api_for: ClientFactory,
    clevertap: CleverTapReceiver,
    clock: FrozenClock,
) -> None:
    container = await start_container()
    mc = await api_for(container)
    await set_clevertap(mc, callbackUrl=clevertap.url())
    good, bad = (
        CleverTapMessage(to="919876543210", body="a"),
        CleverTapMessage(to="919876543211", body="b"),
    )
    clevertap.refuse_meta.add(bad.message_id)
    await sender_for(mc).send_batch([good, bad])

    async def both_settled() -> bool:
        rows = [r for r in await list_deliveries(mc) if r["eventType"] == "clevertap.report"]
        return len(rows) == 2 and all(r["status"] != "PENDING" for r in rows)

    await eventually(both_settled)
    rows = {r["messageId"]: r for r in await list_deliveries(mc)}
    assert [r.meta for r in clevertap.reports] == [good.message_id]
    assert [r.meta for r in clevertap.refused] == [bad.message_id]
    assert sorted(r["status"] for r in rows.values()) == ["DEAD", "DELIVERED"]
    advance(container, clock, 3600)
    await eventually(lambda: _no_pending(mc))
    assert len(clevertap.refused) == 1


async def _no_pending(mc: Any) -> bool:
    return all(r["status"] != "PENDING" for r in await list_deliveries(mc))


async def test_the_clevertap_callback_url_follows_the_ssrf_rules_and_can_be_removed(
    start_container: ContainerFactory, api_for: ClientFactory, clevertap: CleverTapReceiver
) -> None:
    container = await start_container()
    mc = await api_for(container)
    refused = await set_clevertap(mc, callbackUrl="http://10.1.2.3/dlr")
    assert refused.status_code == 400
    assert "callback URL refused" in refused.json()["errorMessage"]
    assert (await set_clevertap(mc, callbackUrl=clevertap.url(), defaultCountryCode="44")).json()[
        "data"
    ] == {
        "customerId": "C-1",
        "callbackUrl": clevertap.url(),
        "defaultCountryCode": "44",
        "replyNumbers": [],
    }
    # a national $$To is now read as a UK number
    sent = await sender_for(mc).send(CleverTapMessage(to="07400123456", body="hello"))
    assert sent.json()["data"]["mobileNumber"] == "7400123456"
    cleared = await set_clevertap(mc, callbackUrl=None)
    assert cleared.json()["data"]["callbackUrl"] is None
    shown = await mc.http.get("/api/v1/clevertap", headers=mc.headers())
    assert shown.json()["data"]["defaultCountryCode"] == "44"


async def test_a_remembered_password_stops_working_when_the_password_changes(
    start_container: ContainerFactory, api_for: ClientFactory
) -> None:
    container = await start_container(tokens={"account_cache_s": 0, "ttl_s": 86400})
    mc = await api_for(container)
    record = {"mobileNumber": "919876543210", "messageText": "hi", "senderId": "UTOMOB", "mid": "x"}
    headers = {"customerId": "C-1", "email": "c-1@example.com", "password": PASSWORD}
    burst = [mc.http.post(SEND_PATH, json=record, headers=headers) for _ in range(20)]
    assert {r.status_code for r in await asyncio.gather(*burst)} == {200}
    wrong = await mc.http.post(SEND_PATH, json=record, headers={**headers, "password": "nope"})
    assert wrong.status_code == 401

    await container.accounts.update("C-1", password="a new long password")

    old = await mc.http.post(SEND_PATH, json=record, headers=headers)
    new = await mc.http.post(
        SEND_PATH, json=record, headers={**headers, "password": "a new long password"}
    )
    assert old.status_code == 401
    assert new.status_code == 200


async def test_a_reply_to_a_reply_number_reaches_clevertap_as_replied_with_the_last_mid(
    start_container: ContainerFactory,
    api_for: ClientFactory,
    clevertap: CleverTapReceiver,
    clock: FrozenClock,
) -> None:
    container = await start_container()
    mc = await api_for(container)
    settings = await set_clevertap(
        mc, callbackUrl=clevertap.url(), replyNumbers=["+91 90000 00001", "5555"]
    )
    assert settings.json()["data"]["replyNumbers"] == ["5555", "+919000000001"]
    first, last = (CleverTapMessage(to="919876543210", body=t) for t in ("one", "two"))
    await sender_for(mc).send(first)
    clock.advance(1)
    await sender_for(mc).send(last)
    await clevertap.wait_for_reports(2)

    for source, destination, text in [
        ("919876543210", "919000000001", "STOP " * 200),  # the customer's number: forwarded
        ("919876543210", "919000000002", "not ours"),  # another number: not forwarded
        ("919999999999", "5555", "never sent to"),  # no CleverTap message to attribute it to
    ]:
        await container.sink.on_inbound(
            InboundMessage(
                connector="sandbox", channel=Channel.SMS, source=source,
                destination=destination, text=text, received_at=clock.now(),
            )
        )  # fmt: skip

    reports = await clevertap.wait_for_reports(3)
    replied = reports[2]
    assert replied.event == "replied"
    assert replied.meta == last.message_id
    assert replied.record["toPhone"] == "919000000001"
    assert replied.record["incomingText"] == ("STOP " * 200)[:512]
    advance(container, clock, 10)
    await eventually(lambda: _no_pending(mc))
    assert len(clevertap.reports) == 3


async def test_a_reply_number_belongs_to_one_customer(
    start_container: ContainerFactory, api_for: ClientFactory
) -> None:
    container = await start_container()
    first, second = await api_for(container, "C-1"), await api_for(container, "C-2")
    assert (await set_clevertap(first, replyNumbers=["+919000000001"])).status_code == 200
    taken = await set_clevertap(second, replyNumbers=["919000000001"])
    assert taken.status_code == 409
    assert "belongs to another customer" in taken.json()["errorMessage"]
    bad = await set_clevertap(second, replyNumbers=["not a number"])
    assert bad.status_code == 400
