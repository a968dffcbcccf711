"""The whole SMS path over real TCP: HTTP API → queue → SMPP connector → the npm SMSC → receipts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from tests.conftest import SettingsFactory, open_client
from tests.e2e.conftest import PASSWORD, eventually
from tests.integration.smpp.conftest import npm_smsc_dir, npm_smsc_factory  # noqa: F401
from tests.integration.smpp.peers import NpmSmsc

from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.testing.client import MessageCentralClient


@pytest.fixture
def peer(npm_smsc_factory: Callable[..., NpmSmsc]) -> NpmSmsc:  # noqa: F811
    return npm_smsc_factory("--receipt-delay-ms", "50")


@pytest.fixture
async def carrier_container(
    make_settings: SettingsFactory, clock: FrozenClock, peer: NpmSmsc
) -> AsyncIterator[Container]:
    settings = make_settings(
        connectors=[
            {"name": "carrier-a", "type": "smpp", "host": "127.0.0.1", "port": peer.port,
             "system_id": peer.system_id, "password": peer.password, "window": 10, "tps": 200,
             "enquire_link_s": 5, "reconnect_initial_s": 0.2, "reconnect_max_s": 1}
        ],
        routes=[{"channel": "SMS", "connectors": ["carrier-a"]}],
    )  # fmt: skip
    built = build_container(settings, clock=clock)
    await built.start(run_workers=True)
    yield built
    await built.stop()


@pytest.fixture
async def carrier_mc(carrier_container: Container) -> AsyncIterator[MessageCentralClient]:
    await carrier_container.accounts.create_customer(
        email="dev@example.com", password=PASSWORD, customer_id="C-1", name="Acme"
    )
    async with await open_client(carrier_container) as http:
        api = MessageCentralClient(http, "C-1", PASSWORD)
        await api.fetch_token()
        yield api


async def message_status(mc: MessageCentralClient, message_id: str) -> str:
    view = await mc.http.get(f"/api/v1/messages/{message_id}", headers=mc.headers())
    return str(view.json()["data"]["status"])


async def test_otp_reaches_the_smsc_as_a_correct_submit_sm_and_validates(
    carrier_mc: MessageCentralClient, peer: NpmSmsc
) -> None:
    sent = (await carrier_mc.send_otp(mobileNumber="9876543210", otpLength="6")).json()
    assert sent["responseCode"] == 200
    verification_id = sent["data"]["verificationId"]
    [submit] = await peer.wait_records(1, timeout_s=10)
    assert submit["source_addr"] == "UTOMOB"
    assert (submit["source_addr_ton"], submit["source_addr_npi"]) == (5, 0)
    assert submit["destination_addr"] == "919876543210"
    assert (submit["dest_addr_ton"], submit["dest_addr_npi"]) == (1, 1)
    assert submit["registered_delivery"] == 1
    assert submit["data_coding"] == 0
    assert submit["validity_period"].endswith("R")  # relative: the OTP's remaining validity
    code = re.match(r"(\d{6}) is your verification code for Acme\.", submit["message"])
    assert code is not None

    async def delivered() -> bool:
        view = await carrier_mc.http.get(
            f"/api/v1/verifications/{verification_id}", headers=carrier_mc.headers()
        )
        return bool(view.json()["data"]["sends"][0]["deliveryStatus"] == "DELIVRD")

    await eventually(delivered)
    assert (await carrier_mc.validate(verification_id, code.group(1))).json()["responseCode"] == 200
    assert (await carrier_mc.outbox()) == []  # a real carrier took it, not the sandbox


async def test_unicode_and_three_part_sms_arrive_whole_and_settle_delivered(
    carrier_mc: MessageCentralClient, peer: NpmSmsc
) -> None:
    base = {"type": "SMS", "flowType": "SMS", "countryCode": "91", "senderId": "ACMEIN",
            "messageType": "TRANSACTIONAL"}  # fmt: skip
    unicode_text = "आपका ऑर्डर भेज दिया गया है 📦"
    long_text = ("Your order {A-17} ships today; track it at example.com/t/A17 € " * 8)[:400]
    first = await carrier_mc.http.post(
        "/verification/v3/send",
        params={**base, "mobileNumber": "9876543210", "message": unicode_text},
        headers=carrier_mc.headers(),
    )
    second = await carrier_mc.http.post(
        "/verification/v3/send",
        params={**base, "mobileNumber": "9876543211", "message": long_text},
        headers=carrier_mc.headers(),
    )
    assert first.json()["data"]["encoding"] == "UCS2"
    assert second.json()["data"]["segments"] == 3
    submits = await peer.wait_records(4, timeout_s=10)
    ucs2 = [s for s in submits if s["destination_addr"] == "919876543210"]
    assert len(ucs2) == 1
    assert ucs2[0]["data_coding"] == 8
    assert ucs2[0]["short_message_hex"] == unicode_text.encode("utf-16-be").hex()
    [whole] = await peer.wait_records(1, command="long_message", timeout_s=10)
    assert whole["text"] == long_text
    for response in (first, second):
        message_id = response.json()["data"]["messageId"]

        async def settled(message_id: str = message_id) -> bool:
            return await message_status(carrier_mc, message_id) == "DELIVERED"

        await eventually(settled)


async def test_status_and_metrics_show_the_bind(
    carrier_mc: MessageCentralClient, carrier_container: Container
) -> None:
    await carrier_mc.send_otp(mobileNumber="9876543210")

    async def bound() -> bool:
        status = (await carrier_mc.http.get("/status")).json()
        connector = next(c for c in status["connectors"] if c["name"] == "carrier-a")
        return bool(connector["available"])

    await eventually(bound)
    metrics = (await carrier_mc.http.get("/metrics")).text
    assert 'switchboard_connector_up{connector="carrier-a"} 1.0' in metrics
    assert "switchboard_queue_depth" in metrics

    async def counted() -> bool:
        text = (await carrier_mc.http.get("/metrics")).text
        return 'switchboard_submits_total{connector="carrier-a",result="submitted"} 1.0' in text

    await eventually(counted)
    assert isinstance(carrier_mc.http, httpx.AsyncClient)
