"""Delivery reports and verification events at a real receiver: the spec's body, signed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from standardwebhooks import Webhook
from tests.e2e.callbacks.conftest import (
    SPEC_KEYS,
    ClientFactory,
    ContainerFactory,
    assert_signed_by,
    list_deliveries,
    send_otp,
    set_callback,
)
from tests.e2e.conftest import eventually
from tests.integration.smpp.conftest import npm_smsc_dir, npm_smsc_factory  # noqa: F401
from tests.integration.smpp.peers import NpmSmsc

from switchboard.bootstrap import Container
from switchboard.callbacks.secrets import secret_id
from switchboard.clock import FrozenClock
from switchboard.testing.callback_receiver import Receivers, answer
from switchboard.testing.client import MessageCentralClient

DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


async def test_put_sets_the_url_and_shows_the_secret_once(
    mc: MessageCentralClient, receivers: Receivers
) -> None:
    receiver = await receivers.start(answer(200))

    configured = await set_callback(mc, receiver.url())
    shown = (await mc.http.get("/api/v1/callbacks", headers=mc.headers())).json()["data"]
    again = await set_callback(mc, receiver.url("/other"))

    secret = configured["secret"]
    assert secret.startswith("whsec_")
    assert configured["secretId"] == secret_id(secret)
    assert shown == {
        "callbackUrl": receiver.url(), "events": [], "enabled": True, "disabledAt": None,
        "disabledReason": None, "secretId": secret_id(secret), "previousSecretId": None,
        "previousSecretValidUntil": None,
    }  # fmt: skip
    assert "secret" not in again  # the endpoint keeps its secret when the URL changes
    assert again["secretId"] == secret_id(secret)
    assert again["callbackUrl"] == receiver.url("/other")
    removed = await set_callback(mc, None)
    assert (removed["callbackUrl"], removed["enabled"]) == (None, False)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/hook", "not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "not a public address"),
        ("http://0x7f.0.0.2:8080/hook", "not a public address"),
        ("http://[::1]:8080/hook", "not a public address"),
        ("ftp://127.0.0.1/hook", "only http and https"),
        ("http://user:pw@127.0.0.1:9/hook", "credentials"),
        ("not a url", "only http and https"),
    ],
)
async def test_urls_outside_the_policy_are_refused_with_a_reason(
    mc: MessageCentralClient, url: str, reason: str
) -> None:
    response = await mc.http.put("/api/v1/callbacks", json={"url": url}, headers=mc.headers())

    body = response.json()
    assert (response.status_code, body["responseCode"]) == (400, 400)
    assert "callback URL refused" in body["errorMessage"]
    assert reason in body["errorMessage"]


async def test_unknown_event_subscription_is_refused(
    mc: MessageCentralClient, receivers: Receivers
) -> None:
    receiver = await receivers.start(answer(200))
    response = await mc.http.put(
        "/api/v1/callbacks",
        json={"url": receiver.url(), "events": ["billing"]},
        headers=mc.headers(),
    )
    assert response.json()["responseCode"] == 400
    assert "billing" in response.json()["errorMessage"]


async def test_an_otp_receipt_gives_exactly_one_signed_callback_with_the_spec_body(
    mc: MessageCentralClient, receivers: Receivers
) -> None:
    receiver = await receivers.start(answer(200))
    secret = (await set_callback(mc, receiver.url()))["secret"]

    message_id = await send_otp(mc)
    [request] = await receiver.wait_for_requests(1)
    await asyncio.sleep(0.3)  # room for a duplicate, which must not come

    assert len(receiver.requests) == 1
    assert request.method == "POST"
    assert request.target == "/hook"
    assert request.headers["content-type"] == "application/json"
    body = Webhook(secret).verify(request.body, request.headers)  # the reference library
    assert list(body) == SPEC_KEYS
    assert body["apiKey"] is None
    assert body["clientId"] is None
    assert body["messageId"] == message_id
    assert body["status"] == "DELIVRD"
    assert body["errorCode"] == 0
    assert body["countryCode"] is None
    assert body["mobile"] == "919876543210"
    assert DATE.fullmatch(body["submitDate"])
    assert DATE.fullmatch(body["doneDate"])
    [listed] = await list_deliveries(mc)
    assert listed["id"] == request.headers["webhook-id"]
    assert listed["messageId"] == message_id
    assert listed["eventType"] == "message.status"
    assert (listed["status"], listed["attempts"], listed["lastStatusCode"]) == ("DELIVERED", 1, 200)
    assert listed["lastLatencyMs"] >= 0
    [attempt] = listed["recentAttempts"]
    assert (attempt["attempt"], attempt["statusCode"], attempt["error"]) == (1, 200, None)


@pytest.mark.parametrize("flow_type", ["SMS", "WHATSAPP", "RCS", "EMAIL"])
async def test_every_channel_reports_the_number_the_otp_was_started_for(
    mc: MessageCentralClient, receivers: Receivers, flow_type: str
) -> None:
    receiver = await receivers.start(answer(200))
    await set_callback(mc, receiver.url())
    extra = {"email": "user@example.com"} if flow_type == "EMAIL" else {}

    message_id = await send_otp(mc, "9876543211", flowType=flow_type, **extra)
    [request] = await receiver.wait_for_requests(1)

    body = request.json()
    assert (body["messageId"], body["status"]) == (message_id, "DELIVRD")
    assert body["mobile"] == "919876543211"


async def test_a_messagenow_sms_reports_the_message_id_the_api_returned(
    mc: MessageCentralClient, receivers: Receivers
) -> None:
    receiver = await receivers.start(answer(200))
    await set_callback(mc, receiver.url())

    sent = await mc.http.post(
        "/verification/v3/send",
        params={"type": "SMS", "flowType": "SMS", "countryCode": "91", "senderId": "ACMEIN",
                "mobileNumber": "9999999999", "message": "Your order has shipped",
                "messageType": "TRANSACTIONAL"},
        headers=mc.headers(),
    )  # fmt: skip
    [request] = await receiver.wait_for_requests(1)

    data = sent.json()["data"]
    body = request.json()
    assert (body["messageId"], body["status"], body["mobile"]) == (
        data["messageId"],
        "DELIVRD",
        "919999999999",
    )


async def test_a_failed_send_is_reported_undeliv(
    start_container: ContainerFactory, api_for: ClientFactory, receivers: Receivers
) -> None:
    built = await start_container(
        connectors=[{"name": "refusing", "type": "sandbox", "outcome": "PERMANENT"}],
        routes=[{"channel": "SMS", "connectors": ["refusing"]}],
    )
    mc = await api_for(built)
    receiver = await receivers.start(answer(200))
    await set_callback(mc, receiver.url())

    message_id = await send_otp(mc)
    [request] = await receiver.wait_for_requests(1)

    assert (request.json()["messageId"], request.json()["status"]) == (message_id, "UNDELIV")


async def test_no_callback_url_means_no_delivery_rows(
    mc: MessageCentralClient, container: Container
) -> None:
    message_id = await send_otp(mc)

    async def delivered() -> bool:
        view = await mc.http.get(f"/api/v1/messages/{message_id}", headers=mc.headers())
        return bool(view.json()["data"]["status"] == "DELIVERED")

    await eventually(delivered)
    await asyncio.sleep(0.3)
    assert await list_deliveries(mc) == []


async def test_rotation_signs_with_both_secrets_for_24_hours_then_the_new_one_only(
    mc: MessageCentralClient, receivers: Receivers, container: Container, clock: FrozenClock
) -> None:
    receiver = await receivers.start(answer(200))
    old = (await set_callback(mc, receiver.url()))["secret"]
    rotated = (await mc.http.post("/api/v1/callbacks/rotate-secret", headers=mc.headers())).json()[
        "data"
    ]
    new = rotated["secret"]

    await send_otp(mc, "9876543210")
    [during] = await receiver.wait_for_requests(1)
    clock.advance(25 * 3600)
    await send_otp(mc, "9876543211")
    [_, after] = await receiver.wait_for_requests(2)

    assert rotated["secretId"] == secret_id(new)
    assert rotated["previousSecretId"] == secret_id(old)
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(during.body, during.headers)
    Webhook(new).verify(during.body, during.headers)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert_signed_by(after, new)
    shown = (await mc.http.get("/api/v1/callbacks", headers=mc.headers())).json()["data"]
    assert shown["previousSecretId"] is None


def _events(requests: list[Any], event_type: str) -> list[dict[str, Any]]:
    return [r.json() for r in requests if r.json().get("type") == event_type]


async def test_subscribed_verification_events_arrive_for_verified_failed_and_expired(
    mc: MessageCentralClient, receivers: Receivers, container: Container, clock: FrozenClock
) -> None:
    receiver = await receivers.start(answer(200))
    secret = (await set_callback(mc, receiver.url(), events=["verification"]))["secret"]

    verified = (await mc.send_otp(mobileNumber="9876543210")).json()["data"]["verificationId"]
    await receiver.wait_for_requests(1)  # its delivery report
    code = await mc.sandbox_code("+919876543210")
    assert (await mc.validate(verified, code)).json()["responseCode"] == 200
    await receiver.wait_for_requests(2)

    failed = (await mc.send_otp(mobileNumber="9876543211")).json()["data"]["verificationId"]
    await receiver.wait_for_requests(3)
    wrong = "0000" if code != "0000" else "1111"
    for _ in range(5):
        await mc.validate(failed, wrong)
    await receiver.wait_for_requests(4)

    expired = (await mc.send_otp(mobileNumber="9876543212")).json()["data"]["verificationId"]
    await receiver.wait_for_requests(5)
    clock.advance(61)
    await container.verification.expire_due()  # what housekeeping runs every few seconds
    requests = await receiver.wait_for_requests(6)

    by_type = {
        kind: _events(requests, f"verification.{kind}")
        for kind in ("verified", "failed", "expired")
    }
    assert [e["data"]["verificationId"] for e in by_type["verified"]] == [verified]
    assert [e["data"]["verificationId"] for e in by_type["failed"]] == [failed]
    assert [e["data"]["verificationId"] for e in by_type["expired"]] == [expired]
    event = by_type["verified"][0]
    assert set(event) == {"id", "type", "timestamp", "sequence", "data"}
    assert event["data"] == {
        "verificationId": verified, "customerId": mc.customer_id, "mobile": "919876543210",
        "flowType": "SMS",
    }  # fmt: skip
    assert event["sequence"] == 1
    request = next(r for r in requests if r.json().get("type") == "verification.verified")
    assert request.headers["webhook-id"] == event["id"]
    assert code not in request.body.decode()
    assert_signed_by(request, secret)


async def test_without_the_subscription_only_delivery_reports_arrive(
    mc: MessageCentralClient, receivers: Receivers
) -> None:
    receiver = await receivers.start(answer(200))
    await set_callback(mc, receiver.url())

    verification_id = (await mc.send_otp(mobileNumber="9876543210")).json()["data"]
    await receiver.wait_for_requests(1)
    code = await mc.sandbox_code("+919876543210")
    await mc.validate(verification_id["verificationId"], code)
    await asyncio.sleep(0.3)

    assert [r.json()["status"] for r in receiver.requests] == ["DELIVRD"]


async def test_a_fallback_send_is_announced_as_a_verification_event(
    start_container: ContainerFactory, api_for: ClientFactory, receivers: Receivers
) -> None:
    built = await start_container(
        connectors=[
            {"name": "wa", "type": "sandbox", "outcome": "UNDELIV", "channels": ["WHATSAPP"]},
            {"name": "sms", "type": "sandbox", "channels": ["SMS"]},
        ],
        routes=[
            {"channel": "WHATSAPP", "connectors": ["wa"]},
            {"channel": "SMS", "connectors": ["sms"]},
        ],
    )
    mc = await api_for(built)
    receiver = await receivers.start(answer(200))
    await set_callback(mc, receiver.url(), events=["verification"])

    sent = await mc.send_otp(mobileNumber="9876543210", flowType="WHATSAPP", fallback="SMS")
    requests = await receiver.wait_for_requests(3)

    verification_id = sent.json()["data"]["verificationId"]
    [fallback] = _events(requests, "verification.fallback")
    assert fallback["data"]["verificationId"] == verification_id
    assert (fallback["data"]["flowType"], fallback["data"]["nextFlowType"]) == ("WHATSAPP", "SMS")
    reports = sorted(r.json()["status"] for r in requests if "status" in r.json())
    assert reports == ["DELIVRD", "UNDELIV"]


async def test_deliveries_are_filtered_and_private_to_their_customer(
    mc: MessageCentralClient,
    container: Container,
    api_for: ClientFactory,
    receivers: Receivers,
) -> None:
    receiver = await receivers.start(answer(200))
    await set_callback(mc, receiver.url())
    message_id = await send_otp(mc, "9876543210")
    await send_otp(mc, "9876543211")
    await receiver.wait_for_requests(2)
    other = await api_for(container, "C-OTHER")

    mine = await list_deliveries(mc, messageId=message_id)
    delivered = await list_deliveries(mc, status="delivered", limit=1)
    foreign = await other.http.post(
        f"/api/v1/callbacks/deliveries/{mine[0]['id']}/replay", headers=other.headers()
    )

    assert [d["messageId"] for d in mine] == [message_id]
    assert len(delivered) == 1
    assert await list_deliveries(other) == []
    assert foreign.json()["responseCode"] == 400
    assert "no delivery" in foreign.json()["errorMessage"]
    bad = await mc.http.get(
        "/api/v1/callbacks/deliveries", params={"status": "LOST"}, headers=mc.headers()
    )
    assert bad.json()["responseCode"] == 400


async def test_callbacks_need_a_token(mc: MessageCentralClient) -> None:
    response = await mc.http.get("/api/v1/callbacks")
    assert response.json()["responseCode"] == 501


@pytest.fixture
def peer(npm_smsc_factory: Callable[..., NpmSmsc]) -> NpmSmsc:  # noqa: F811
    return npm_smsc_factory("--receipt-delay-ms", "50")


async def test_a_receipt_from_the_smsc_peer_gives_one_signed_callback(
    start_container: ContainerFactory,
    api_for: ClientFactory,
    receivers: Receivers,
    peer: NpmSmsc,
) -> None:
    built = await start_container(
        connectors=[
            {"name": "carrier", "type": "smpp", "host": "127.0.0.1", "port": peer.port,
             "system_id": peer.system_id, "password": peer.password,
             "reconnect_initial_s": 0.2, "reconnect_max_s": 1}
        ],
        routes=[{"channel": "SMS", "connectors": ["carrier"]}],
    )  # fmt: skip
    mc = await api_for(built)
    receiver = await receivers.start(answer(200))
    secret = (await set_callback(mc, receiver.url()))["secret"]

    message_id = await send_otp(mc)
    [request] = await receiver.wait_for_requests(1, timeout_s=20)
    await asyncio.sleep(0.3)

    assert len(receiver.requests) == 1
    body = Webhook(secret).verify(request.body, request.headers)
    assert list(body) == SPEC_KEYS
    assert (body["messageId"], body["status"], body["mobile"]) == (
        message_id,
        "DELIVRD",
        "919876543210",
    )
    assert body["errorCode"] == 0
