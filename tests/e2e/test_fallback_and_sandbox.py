"""Fallback plans driven by scripted sandbox carriers, test numbers, and the native API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.conftest import SettingsFactory
from tests.e2e.conftest import eventually

from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.testing.client import MessageCentralClient


def scripted(
    make_settings: SettingsFactory, clock: FrozenClock, whatsapp_outcome: str, **extra: Any
) -> Container:
    settings = make_settings(
        connectors=[
            {"name": "wa-sandbox", "type": "sandbox", "outcome": whatsapp_outcome,
             "channels": ["WHATSAPP"]},
            {"name": "sms-sandbox", "type": "sandbox", "channels": ["SMS", "EMAIL"]},
        ],
        routes=[
            {"channel": "WHATSAPP", "connectors": ["wa-sandbox"]},
            {"channel": "SMS", "connectors": ["sms-sandbox"]},
            {"channel": "EMAIL", "connectors": ["sms-sandbox"]},
        ],
        **extra,
    )  # fmt: skip
    return build_container(settings, clock=clock)


def _values(view: Any) -> list[str]:
    """Every scalar of a JSON document, as text."""
    if isinstance(view, dict):
        return [v for value in view.values() for v in _values(value)]
    if isinstance(view, list):
        return [v for value in view for v in _values(value)]
    return [str(view)]


def _is_timestamp(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


async def timeline(mc: MessageCentralClient, verification_id: str) -> dict[str, Any]:
    view = await mc.http.get(f"/api/v1/verifications/{verification_id}", headers=mc.headers())
    data: dict[str, Any] = view.json()["data"]
    return data


async def test_a_failed_whatsapp_send_falls_back_to_sms_with_the_same_code(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: Any
) -> None:
    mc = await start_api(scripted(make_settings, clock, "UNDELIV"))
    sent = (
        await mc.send_otp(mobileNumber="9876543210", flowType="WHATSAPP", fallback="SMS")
    ).json()
    verification_id = sent["data"]["verificationId"]

    async def both_sent() -> bool:
        return len(await mc.outbox()) == 2

    await eventually(both_sent)
    whatsapp, sms = await mc.outbox()
    assert (whatsapp["channel"], sms["channel"]) == ("WHATSAPP", "SMS")
    code = sms["text"].split()[0]
    assert whatsapp["text"].split()[0] == code
    view = await timeline(mc, verification_id)
    assert [s["channel"] for s in view["sends"]] == ["WHATSAPP", "SMS"]
    assert view["sends"][0]["deliveryStatus"] == "UNDELIV"
    assert (await mc.validate(verification_id, code)).json()["responseCode"] == 200


async def test_silence_past_the_step_timeout_triggers_the_next_channel(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: Any
) -> None:
    built = scripted(make_settings, clock, "SILENT", otp={"fallback_step_timeout_s": 5})
    mc = await start_api(built)
    await built.accounts.update("C-1", settings={"fallback": ["WHATSAPP", "SMS"]})
    sent = (await mc.send_otp(mobileNumber="9876543210", flowType="WHATSAPP")).json()
    verification_id = sent["data"]["verificationId"]

    async def whatsapp_sent() -> bool:
        return len(await mc.outbox()) == 1

    await eventually(whatsapp_sent)
    view = await timeline(mc, verification_id)
    assert [s["status"] for s in view["sends"]] == ["SUBMITTED", "QUEUED"]
    clock.advance(6)

    async def sms_sent() -> bool:
        return [e["channel"] for e in await mc.outbox()] == ["WHATSAPP", "SMS"]

    await eventually(sms_sent)


async def test_a_successful_validate_stops_the_plan(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: Any
) -> None:
    built = scripted(make_settings, clock, "SILENT", otp={"fallback_step_timeout_s": 5})
    mc = await start_api(built)
    sent = (
        await mc.send_otp(
            mobileNumber="9876543210", flowType="WHATSAPP", fallback="SMS,EMAIL",
            email="user@example.com",
        )
    ).json()  # fmt: skip
    verification_id = sent["data"]["verificationId"]

    async def whatsapp_sent() -> bool:
        return len(await mc.outbox()) == 1

    await eventually(whatsapp_sent)
    code = (await mc.outbox())[0]["text"].split()[0]
    assert (await mc.validate(verification_id, code)).json()["responseCode"] == 200
    clock.advance(60)
    view = await timeline(mc, verification_id)
    assert [s["status"] for s in view["sends"]] == ["SUBMITTED", "CANCELLED", "CANCELLED"]
    assert len(await mc.outbox()) == 1


async def test_email_otp_reaches_the_email_route(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: Any
) -> None:
    mc = await start_api(scripted(make_settings, clock, "DELIVRD"))
    sent = (
        await mc.send_otp(mobileNumber="9876543210", flowType="EMAIL", email="user@example.com")
    ).json()
    assert sent["responseCode"] == 200

    async def mailed() -> bool:
        return any(e["destination"] == "user@example.com" for e in await mc.outbox())

    await eventually(mailed)
    [entry] = await mc.outbox()
    assert entry["channel"] == "EMAIL"
    assert "is your verification code for Acme" in entry["text"]


async def test_test_numbers_get_their_fixed_code_even_when_not_a_real_number(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: Any
) -> None:
    settings = make_settings(sandbox={"test_numbers": {"+91999999999": "1476"}})
    mc = await start_api(build_container(settings, clock=clock))
    # the spec's own example number, which no numbering plan accepts
    sent = await mc.http.post(
        "/verification/v3/send?countryCode=91&flowType=SMS&mobileNumber=999999999",
        headers=mc.headers(),
    )
    verification_id = sent.json()["data"]["verificationId"]
    for _ in range(3):  # test numbers skip the resend cooldown and send limits
        again = await mc.send_otp(mobileNumber="999999999")
        assert again.json()["responseCode"] == 200
        verification_id = again.json()["data"]["verificationId"]
    assert (await mc.validate(verification_id, "1476")).json()["responseCode"] == 200


async def test_cancel_ends_a_pending_verification(mc: MessageCentralClient) -> None:
    sent = (await mc.send_otp(mobileNumber="9876543210")).json()
    verification_id = sent["data"]["verificationId"]
    cancel = await mc.http.post(
        f"/api/v1/verifications/{verification_id}/cancel", headers=mc.headers()
    )
    assert cancel.json()["data"]["status"] == "CANCELLED"
    again = await mc.http.post(
        f"/api/v1/verifications/{verification_id}/cancel", headers=mc.headers()
    )
    assert again.json()["responseCode"] == 705
    view = await timeline(mc, verification_id)
    assert view["status"] == "CANCELLED"
    assert all("code" not in check for check in view["checks"])


async def test_timeline_lists_each_check_without_codes(mc: MessageCentralClient) -> None:
    sent = (await mc.send_otp(mobileNumber="9876543210")).json()
    verification_id = sent["data"]["verificationId"]
    await mc.validate(verification_id, "0000")
    view = await timeline(mc, verification_id)
    assert [c["result"] for c in view["checks"]] in (["WRONG_CODE"], ["VERIFIED"])
    assert view["attempts"] == 1
    assert view["maxAttempts"] == 5
    # no field holds the code given, whole or in a text (timestamps and ids aside: their
    # digits may read ".520000")
    ids = {str(verification_id), *(send["messageId"] for send in view["sends"])}
    leaked = [v for v in _values(view) if "0000" in v and v not in ids and not _is_timestamp(v)]
    assert leaked == []
    assert all("code" not in check for check in view["checks"])
