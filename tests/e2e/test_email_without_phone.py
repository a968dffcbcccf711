"""E-mailed codes and MessageNow e-mails with an address only: no countryCode, no mobileNumber."""

from __future__ import annotations

import re

import httpx
import sqlalchemy as sa
from tests.conftest import SettingsFactory
from tests.e2e.conftest import eventually

from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.storage.sql.tables import verifications
from switchboard.testing.callback_receiver import Receiver, answer
from switchboard.testing.client import MessageCentralClient

ADDRESS = "ana@example.com"


async def _send_email_otp(mc: MessageCentralClient, **params: str) -> httpx.Response:
    query = {"flowType": "EMAIL", "email": ADDRESS, **params}
    return await mc.http.post("/verification/v3/send", params=query, headers=mc.headers())


async def _code_sent_to(mc: MessageCentralClient, address: str) -> str:
    found: list[str] = []

    async def arrived() -> bool:
        for entry in await mc.outbox():
            match = re.search(r"\b(\d{4,8})\b", entry["text"])
            if entry["destination"] == address and match:
                found.append(match.group(1))
        return bool(found)

    await eventually(arrived)
    return found[-1]


async def test_email_otp_needs_only_the_address_and_validates(
    mc: MessageCentralClient, container: Container
) -> None:
    response = await _send_email_otp(mc)
    body = response.json()
    assert body["responseCode"] == 200, body
    data = body["data"]
    assert data["mobileNumber"] == ""  # a string still, for clients that type it as one
    code = await _code_sent_to(mc, ADDRESS)
    checked = (await mc.validate(data["verificationId"], code)).json()
    assert checked["responseCode"] == 200, checked
    assert checked["data"]["verificationStatus"] == "VERIFICATION_COMPLETED"
    async with container.database.read() as connection:
        row = (await connection.execute(sa.select(verifications))).one()
    assert (row.destination, row.country_code, row.mobile_number) == (ADDRESS, "", "")


async def test_email_otp_cooldown_applies_per_address_whatever_its_case(
    mc: MessageCentralClient, clock: FrozenClock
) -> None:
    assert (await _send_email_otp(mc)).json()["responseCode"] == 200
    again = (await _send_email_otp(mc, email="Ana@Example.COM")).json()
    assert again["responseCode"] == 506, again
    other = (await _send_email_otp(mc, email="bo@example.com")).json()
    assert other["responseCode"] == 200, other
    clock.advance(31)
    assert (await _send_email_otp(mc)).json()["responseCode"] == 200


async def test_email_otp_with_a_habitual_country_code_but_no_number_is_accepted(
    mc: MessageCentralClient,
) -> None:
    body = (await _send_email_otp(mc, countryCode="91")).json()
    assert body["responseCode"] == 200, body
    bad = (await _send_email_otp(mc, countryCode="999", email="x@example.com")).json()
    assert bad["responseCode"] == 511, bad


async def test_email_otp_without_a_number_refuses_a_phone_fallback(
    mc: MessageCentralClient,
) -> None:
    body = (await _send_email_otp(mc, fallback="SMS")).json()
    assert body["responseCode"] == 400
    assert "mobileNumber is required for the fallback channel SMS" in body["errorMessage"]


async def test_email_otp_without_an_address_still_says_email_is_required(
    mc: MessageCentralClient,
) -> None:
    body = (await _send_email_otp(mc, email="")).json()
    assert body["responseCode"] == 400
    assert "email is required" in body["errorMessage"]


async def test_messagenow_email_needs_only_the_address(mc: MessageCentralClient) -> None:
    params = {
        "type": "SMS", "flowType": "EMAIL", "email": "news@example.com",
        "subject": "Hello", "message": "Your order shipped",
    }  # fmt: skip
    response = await mc.http.post("/verification/v3/send", params=params, headers=mc.headers())
    body = response.json()
    assert body["responseCode"] == 200, body
    assert body["data"]["messageId"]

    async def delivered() -> bool:
        return any(e["destination"] == "news@example.com" for e in await mc.outbox())

    await eventually(delivered)


async def test_an_address_too_long_for_any_mailbox_is_a_400_not_a_server_error(
    mc: MessageCentralClient,
) -> None:
    long_address = "a" * 320 + "@example.com"  # longer than the destination columns
    otp = (await _send_email_otp(mc, email=long_address)).json()
    assert otp["responseCode"] == 400, otp
    params = {"type": "SMS", "flowType": "EMAIL", "email": long_address, "message": "Hi"}
    sent = await mc.http.post("/verification/v3/send", params=params, headers=mc.headers())
    assert sent.json()["responseCode"] == 400, sent.json()


async def test_callbacks_of_an_address_only_code_carry_no_mobile(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: object
) -> None:
    receiver = Receiver(answer(200))
    await receiver.start()
    try:
        built = build_container(
            make_settings(webhooks={"allow_networks": ["127.0.0.1/32"], "allowed_ports": []}),
            clock=clock,
        )
        mc = await start_api(built)  # type: ignore[operator]
        await built.callbacks.configure("C-1", receiver.url(), events=["verification"])
        sent = (await _send_email_otp(mc)).json()["data"]
        code = await _code_sent_to(mc, ADDRESS)
        checked = (await mc.validate(sent["verificationId"], code)).json()
        assert checked["responseCode"] == 200, checked

        async def notified() -> bool:
            return any(r.json().get("type") == "verification.verified" for r in receiver.requests)

        await eventually(notified)
        event = next(
            r.json() for r in receiver.requests if r.json().get("type") == "verification.verified"
        )
        assert event["data"]["mobile"] is None
        assert event["data"]["verificationId"] == sent["verificationId"]

        async def reported() -> bool:
            return any(r.json().get("status") == "DELIVRD" for r in receiver.requests)

        await eventually(reported)  # the e-mail's delivery report, the spec's body
        report = next(r.json() for r in receiver.requests if r.json().get("status") == "DELIVRD")
        assert report["mobile"] is None
    finally:
        await receiver.stop()
