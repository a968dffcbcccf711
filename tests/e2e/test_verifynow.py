"""VerifyNow send and validate through HTTP, every response code of the spec."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
import sqlalchemy as sa
from tests.e2e.conftest import eventually

from switchboard.bootstrap import Container
from switchboard.clock import FrozenClock
from switchboard.storage.sql.tables import messages, verifications
from switchboard.testing.client import MessageCentralClient

NUMBER = "9876543210"
E164 = "+919876543210"


async def send_and_read_code(
    mc: MessageCentralClient, number: str = NUMBER, **params: str
) -> tuple[str, str]:
    """Send an OTP and read the code the sandbox carrier received for it."""
    seen = max((e["id"] for e in await mc.outbox()), default=0)
    response = await mc.send_otp(mobileNumber=number, **params)
    body = response.json()
    assert body["responseCode"] == 200, body
    destination = params.get("email") or f"+{params.get('countryCode', '91')}{number}"
    fresh: list[dict[str, object]] = []

    async def arrived() -> bool:
        fresh[:] = [
            e for e in await mc.outbox() if e["id"] > seen and e["destination"] == destination
        ]
        return bool(fresh)

    await eventually(arrived)
    match = re.search(r"\b(\d{4,8})\b", str(fresh[-1]["text"]))
    assert match
    return body["data"]["verificationId"], match.group(1)


async def test_spec_send_returns_the_documented_body(mc: MessageCentralClient) -> None:
    response = await mc.http.post(
        f"/verification/v3/send?countryCode=91&flowType=SMS&mobileNumber={NUMBER}",
        headers={"authToken": mc.token or ""},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["responseCode"] == 200
    assert body["message"] == "SUCCESS"
    data = body["data"]
    assert set(data) == {
        "verificationId", "mobileNumber", "responseCode", "errorMessage", "timeout", "smsCLI",
        "transactionId",
    }  # fmt: skip
    assert data["verificationId"].isdigit()
    assert data["mobileNumber"] == NUMBER
    assert data["responseCode"] == "200"
    assert data["errorMessage"] is None
    assert data["timeout"] == "60"
    assert data["smsCLI"] == "UTOMOB"
    assert len(data["transactionId"]) == 36


async def test_send_then_validate_completes_the_verification(mc: MessageCentralClient) -> None:
    verification_id, code = await send_and_read_code(mc)
    assert len(code) == 4
    response = await mc.http.get(
        f"/verification/v3/validateOtp?&verificationId={verification_id}&code={code}",
        headers={"authToken": mc.token or ""},
    )
    body = response.json()
    assert body["responseCode"] == 200
    assert body["data"]["verificationStatus"] == "VERIFICATION_COMPLETED"
    assert body["data"]["verificationId"] == verification_id
    assert body["data"]["authToken"] is None
    again = await mc.validate(verification_id, code)
    assert again.json()["responseCode"] == 703
    assert again.json()["message"] == "ALREADY_VERIFIED"


async def test_validate_accepts_post_and_a_json_body(mc: MessageCentralClient) -> None:
    verification_id, code = await send_and_read_code(mc)
    response = await mc.http.post(
        "/verification/v3/validateOtp",
        json={"verificationId": verification_id, "code": code, "langId": "en"},
        headers=mc.headers(),
    )
    assert response.json()["responseCode"] == 200


async def test_send_parameters_merge_from_query_form_and_json(mc: MessageCentralClient) -> None:
    as_form = await mc.http.post(
        "/verification/v3/send?countryCode=91",
        data={"mobileNumber": NUMBER, "flowType": "SMS", "otpLength": "6"},
        headers=mc.headers(),
    )
    assert as_form.json()["responseCode"] == 200
    as_json = await mc.http.post(
        "/verification/v3/send?countryCode=91&flowType=SMS",
        json={"mobileNumber": "9876543211", "otpLength": 8},
        headers=mc.headers(),
    )
    assert as_json.json()["responseCode"] == 200
    empty_json = await mc.http.post(
        "/verification/v3/send?countryCode=91&flowType=SMS&mobileNumber=9876543212",
        content=b"",
        headers={**mc.headers(), "Content-Type": "application/json"},
    )
    assert empty_json.json()["responseCode"] == 200

    async def arrived() -> bool:
        return any(e["destination"] == "+919876543211" for e in await mc.outbox())

    await eventually(arrived)
    assert len(await mc.sandbox_code("+919876543211")) == 8


@pytest.mark.parametrize(
    ("params", "code", "reason"),
    [
        ({"otpLength": "3"}, 400, "otpLength must be between 4 and 8"),
        ({"otpLength": "9"}, 400, "otpLength must be between 4 and 8"),
        ({"otpLength": "six"}, 400, "otpLength"),
        ({"otpTimeout": "10"}, 400, "otpTimeout must be between 20 and 600"),
        ({"otpTimeout": "601"}, 400, "otpTimeout must be between 20 and 600"),
        ({"countryCode": "999"}, 511, "not a country calling code"),
        ({"countryCode": "abc"}, 511, "not a country calling code"),
        ({"mobileNumber": "12345"}, 400, "not a valid number"),
        ({"mobileNumber": "98765x3210"}, 400, "digits only"),
        ({"mobileNumber": ""}, 400, "mobileNumber is required"),
        ({"flowType": "SAUTH", "fallback": "PIGEON"}, 400, "fallback channel"),
        ({"flowType": "PIGEON"}, 400, "not one of SMS, WHATSAPP, RCS, EMAIL"),
        ({"flowType": "EMAIL"}, 400, "email is required"),
        ({"langId": "fr"}, 400, "langId"),
        ({"mobileNumber": "8005550100", "countryCode": "1"}, 400, "toll-free"),
        ({"fallback": "PIGEON"}, 400, "fallback channel"),
    ],
)
async def test_bad_send_parameters_get_a_code_and_a_reason(
    mc: MessageCentralClient, params: dict[str, str], code: int, reason: str
) -> None:
    response = await mc.send_otp(**{"mobileNumber": NUMBER, **params})
    body = response.json()
    assert body["responseCode"] == code, body
    assert reason in body["errorMessage"]
    assert reason in body["data"]["errorMessage"]


async def test_wrong_codes_count_down_and_the_sixth_check_fails_even_with_the_right_code(
    mc: MessageCentralClient,
) -> None:
    verification_id, code = await send_and_read_code(mc)
    wrong = "0000" if code != "0000" else "1111"
    for left in (4, 3, 2, 1):
        body = (await mc.validate(verification_id, wrong)).json()
        assert body["responseCode"] == 702
        assert body["message"] == "WRONG_OTP_PROVIDED"
        assert f"{left} attempt" in body["errorMessage"]
    fifth = (await mc.validate(verification_id, wrong)).json()
    assert fifth["responseCode"] == 702
    assert "no attempts left" in fifth["errorMessage"]
    sixth = (await mc.validate(verification_id, code)).json()
    assert sixth["responseCode"] == 700
    assert sixth["message"] == "VERIFICATION_FAILED"


async def test_expired_code_is_705(mc: MessageCentralClient, clock: FrozenClock) -> None:
    verification_id, code = await send_and_read_code(mc, otpTimeout="30")
    clock.advance(31)
    body = (await mc.validate(verification_id, code)).json()
    assert body["responseCode"] == 705
    assert body["message"] == "VERIFICATION_EXPIRED"


async def test_unknown_and_foreign_verification_ids_are_indistinguishable(
    mc: MessageCentralClient, container: Container, client: httpx.AsyncClient
) -> None:
    verification_id, code = await send_and_read_code(mc)
    await container.accounts.create_customer(
        email="other@example.com", password="another password", customer_id="C-OTHER"
    )
    other = MessageCentralClient(client, "C-OTHER", "another password")
    await other.fetch_token()
    foreign = await other.validate(verification_id, code)
    unknown = await mc.validate("123456789012345678", code)
    garbage = await mc.validate("not-a-number", code)
    assert foreign.json()["responseCode"] == 505
    assert foreign.json()["message"] == "INVALID_VERIFICATION_ID"
    for response in (unknown, garbage):
        assert response.status_code == foreign.status_code
        assert response.json()["errorMessage"] == foreign.json()["errorMessage"]
    # the foreign attempt did not use up the owner's verification
    assert (await mc.validate(verification_id, code)).json()["responseCode"] == 200


async def test_validate_needs_both_parameters(mc: MessageCentralClient) -> None:
    no_code = await mc.http.get(
        "/verification/v3/validateOtp", params={"verificationId": "1"}, headers=mc.headers()
    )
    assert no_code.json()["responseCode"] == 400
    assert "code is required" in no_code.json()["errorMessage"]
    no_id = await mc.http.get(
        "/verification/v3/validateOtp", params={"code": "1234"}, headers=mc.headers()
    )
    assert "verificationId is required" in no_id.json()["errorMessage"]


async def test_resend_inside_the_cooldown_is_506_with_seconds_to_wait(
    mc: MessageCentralClient, clock: FrozenClock
) -> None:
    await send_and_read_code(mc)
    clock.advance(10)
    response = await mc.send_otp(mobileNumber=NUMBER)
    body = response.json()
    assert body["responseCode"] == 506
    assert body["message"] == "REQUEST_ALREADY_EXISTS"
    assert "resend after 20 s" in body["errorMessage"]
    assert response.headers["Retry-After"] == "20"


async def test_resend_after_the_cooldown_kills_the_old_code(
    mc: MessageCentralClient, clock: FrozenClock
) -> None:
    old_id, old_code = await send_and_read_code(mc)
    clock.advance(31)
    new_id, new_code = await send_and_read_code(mc)
    assert new_id != old_id
    assert (await mc.validate(old_id, old_code)).json()["responseCode"] == 705
    assert (await mc.validate(new_id, new_code)).json()["responseCode"] == 200


async def test_sixth_send_to_a_number_in_ten_minutes_is_800(
    mc: MessageCentralClient, clock: FrozenClock
) -> None:
    for _ in range(5):
        assert (await mc.send_otp(mobileNumber=NUMBER)).json()["responseCode"] == 200
        clock.advance(31)
    body = (await mc.send_otp(mobileNumber=NUMBER)).json()
    assert body["responseCode"] == 800
    assert body["message"] == "MAXIMUM_LIMIT_REACHED"
    clock.advance(10 * 60)
    assert (await mc.send_otp(mobileNumber=NUMBER)).json()["responseCode"] == 200


async def test_daily_limits_per_number_and_per_account(
    mc: MessageCentralClient, container: Container, clock: FrozenClock, customer: str
) -> None:
    for _ in range(10):
        assert (await mc.send_otp(mobileNumber=NUMBER)).json()["responseCode"] == 200
        clock.advance(121)
    per_number = (await mc.send_otp(mobileNumber=NUMBER)).json()
    assert per_number["responseCode"] == 800
    assert "24 hours" in per_number["errorMessage"]
    await container.accounts.update(customer, settings={"daily_quota": 11})
    assert (await mc.send_otp(mobileNumber="9876543219")).json()["responseCode"] == 200
    quota = (await mc.send_otp(mobileNumber="9876543218")).json()
    assert quota["responseCode"] == 800
    assert "daily quota" in quota["errorMessage"]


async def test_concurrent_sends_to_one_number_queue_exactly_one_code(
    mc: MessageCentralClient, container: Container
) -> None:
    """Sends arriving together share a transaction (group commit), but never two to one
    number: the second sees the first and gets the cooldown."""
    results = await asyncio.gather(*(mc.send_otp(mobileNumber=NUMBER) for _ in range(20)))
    codes = sorted(r.json()["responseCode"] for r in results)
    assert codes == [200] + [506] * 19
    async with container.database.read() as connection:
        rows = (
            await connection.execute(
                sa.select(verifications.c.status).where(
                    verifications.c.destination == f"+91{NUMBER}"
                )
            )
        ).all()
    assert [row.status for row in rows] == ["PENDING"]


async def test_concurrent_sends_stop_exactly_at_the_daily_quota(
    mc: MessageCentralClient, container: Container, customer: str
) -> None:
    await container.accounts.update(
        customer, settings={"daily_quota": 25, "fraud.prefix_velocity": "off"}
    )
    results = await asyncio.gather(*(mc.send_otp(mobileNumber=f"98765{n:05d}") for n in range(40)))
    codes = [r.json()["responseCode"] for r in results]
    assert codes.count(200) == 25
    assert codes.count(800) == 15
    async with container.database.read() as connection:
        stored = await connection.scalar(sa.select(sa.func.count()).select_from(verifications))
        queued = await connection.scalar(sa.select(sa.func.count()).select_from(messages))
    assert (stored, queued) == (25, 25)


async def test_checks_arriving_together_each_get_their_own_answer(
    mc: MessageCentralClient, container: Container
) -> None:
    """Concurrent validations share transactions (group commit); each keeps its own outcome:
    right codes verify once, wrong ones count an attempt, unknown ids are 505."""
    sent = [await send_and_read_code(mc, number=f"98765{n:05d}") for n in range(6)]
    calls = []
    for verification_id, code in sent[:3]:
        # the second one finds it verified
        calls += [mc.validate(verification_id, code), mc.validate(verification_id, code)]
    for verification_id, code in sent[3:]:
        calls.append(mc.validate(verification_id, "0000" if code != "0000" else "1111"))
    calls.append(mc.validate("123456789012345678", "1234"))
    results = [r.json()["responseCode"] for r in await asyncio.gather(*calls)]
    for pair in range(3):
        assert sorted(results[2 * pair : 2 * pair + 2]) == [200, 703]
    assert results[6:] == [702, 702, 702, 505]
    async with container.database.read() as connection:
        rows = (
            await connection.execute(
                sa.select(verifications.c.status, verifications.c.attempts).order_by(
                    verifications.c.destination
                )
            )
        ).all()
    assert [(r.status, r.attempts) for r in rows] == [("VERIFIED", 1)] * 3 + [("PENDING", 1)] * 3


async def test_country_allow_list_refuses_other_countries_with_511(
    mc: MessageCentralClient, container: Container, customer: str
) -> None:
    await container.accounts.update(customer, settings={"allowed_countries": ["91"]})
    assert (await mc.send_otp(mobileNumber=NUMBER)).json()["responseCode"] == 200
    uk = (await mc.send_otp(countryCode="44", mobileNumber="7911123456")).json()
    assert uk["responseCode"] == 511
    assert uk["message"] == "INVALID_COUNTRY_CODE"


async def test_codes_are_never_stored_in_clear_after_sending(
    mc: MessageCentralClient, container: Container, capfd: pytest.CaptureFixture[str]
) -> None:
    verification_id, code = await send_and_read_code(mc, otpLength="8")

    async def submitted() -> bool:
        async with container.database.read() as connection:
            status = await connection.scalar(sa.select(messages.c.status))
        return status in {"SUBMITTED", "DELIVERED"}

    await eventually(submitted)
    await mc.validate(verification_id, code)
    async with container.database.read() as connection:
        stored = [dict(r._mapping) for r in (await connection.execute(sa.select(messages))).all()]
        stored += [
            dict(r._mapping) for r in (await connection.execute(sa.select(verifications))).all()
        ]
    dump = json.dumps(stored, default=str)
    assert code not in dump
    assert "******** is your verification code" in dump
    logs = capfd.readouterr()
    assert code not in logs.out + logs.err
    assert (mc.token or "")[:40] not in logs.out + logs.err


async def test_twenty_concurrent_right_codes_give_exactly_one_success(
    mc: MessageCentralClient,
) -> None:
    verification_id, code = await send_and_read_code(mc)
    results = await asyncio.gather(*(mc.validate(verification_id, code) for _ in range(20)))
    codes = sorted(r.json()["responseCode"] for r in results)
    assert codes.count(200) == 1
    assert set(codes) - {200} == {703}


async def test_fifty_concurrent_wrong_codes_never_exceed_the_attempt_limit(
    mc: MessageCentralClient, container: Container
) -> None:
    verification_id, code = await send_and_read_code(mc)
    wrong = "0000" if code != "0000" else "1111"
    results = await asyncio.gather(*(mc.validate(verification_id, wrong) for _ in range(50)))
    assert {r.json()["responseCode"] for r in results} <= {702, 700}
    async with container.database.read() as connection:
        attempts = await connection.scalar(
            sa.select(verifications.c.attempts).where(verifications.c.id == int(verification_id))
        )
    assert attempts == 5
    assert (await mc.validate(verification_id, code)).json()["responseCode"] == 700
