"""Idempotency-Key on the sends and validateOtp: one run per key, the first answer replayed."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
import xlsxwriter
from tests.conftest import SettingsFactory
from tests.e2e.conftest import eventually

from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.domain.idempotency import IdempotencyRecord, KeyState
from switchboard.storage.sql.tables import campaigns, idempotency_keys, messages, verifications
from switchboard.testing.client import MessageCentralClient

SEND = "/verification/v3/send"
NUMBER = "9876543210"
OTP = {"countryCode": "91", "mobileNumber": NUMBER, "flowType": "SMS"}
SMS = {
    "type": "SMS", "flowType": "SMS", "countryCode": "91", "mobileNumber": NUMBER,
    "senderId": "ACMEIN", "messageType": "TRANSACTIONAL", "message": "Your order shipped",
}  # fmt: skip


async def _post(
    mc: MessageCentralClient, params: dict[str, str], key: str | None, **extra: object
) -> httpx.Response:
    headers = mc.headers() | ({"Idempotency-Key": key} if key is not None else {})
    return await mc.http.post(SEND, params=params, headers=headers, **extra)  # type: ignore[arg-type]


async def _count(container: Container, table: sa.Table) -> int:
    async with container.database.read() as connection:
        return int(
            (await connection.execute(sa.select(sa.func.count()).select_from(table))).one()[0]
        )


@pytest.mark.parametrize("params", [OTP, SMS], ids=["otp", "messagenow"])
async def test_twenty_concurrent_sends_with_one_key_send_one_message_and_answer_alike(
    mc: MessageCentralClient, container: Container, params: dict[str, str]
) -> None:
    answers = await asyncio.gather(*(_post(mc, params, "order-42") for _ in range(20)))
    bodies = {a.content for a in answers}
    assert len(bodies) == 1, bodies
    assert {a.status_code for a in answers} == {200}
    assert answers[0].json()["responseCode"] == 200
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 19
    assert await _count(container, messages) == 1
    assert await _count(container, verifications) == (1 if params is OTP else 0)


async def test_a_retry_after_the_answer_gets_the_stored_answer_not_a_second_send(
    mc: MessageCentralClient, container: Container
) -> None:
    first = await _post(mc, OTP, "k-1")
    again = await _post(mc, OTP, "k-1")
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await _count(container, verifications) == 1
    # without the key the cooldown answers as it always did: the key, not luck, stopped it
    assert (await _post(mc, OTP, None)).json()["responseCode"] == 506


async def test_the_same_key_with_another_request_is_a_409(mc: MessageCentralClient) -> None:
    assert (await _post(mc, OTP, "k-2")).json()["responseCode"] == 200
    other = await _post(mc, {**OTP, "mobileNumber": "9876543211"}, "k-2")
    body = other.json()
    assert other.status_code == 409
    assert body["responseCode"] == 409
    assert "was used with a different request" in body["errorMessage"]


async def test_parameters_in_query_form_or_json_are_the_same_request(
    mc: MessageCentralClient, container: Container
) -> None:
    first = await _post(mc, OTP, "k-3")
    as_json = await mc.http.post(
        SEND, json={k.lower(): v for k, v in OTP.items()},
        headers=mc.headers() | {"Idempotency-Key": "k-3"},
    )  # fmt: skip
    as_form = await mc.http.post(SEND, data=OTP, headers=mc.headers() | {"Idempotency-Key": "k-3"})
    assert as_json.content == first.content == as_form.content
    assert await _count(container, verifications) == 1


async def test_keys_are_scoped_per_account(mc: MessageCentralClient, container: Container) -> None:
    await container.accounts.create_customer(
        email="b@example.com", password="password b", customer_id="C-B"
    )
    other = MessageCentralClient(mc.http, "C-B", "password b")
    await other.fetch_token()
    assert (await _post(mc, OTP, "shared")).json()["responseCode"] == 200
    assert (await _post(other, OTP, "shared")).json()["responseCode"] == 200
    assert await _count(container, verifications) == 2


async def test_a_key_is_forgotten_after_24_hours(
    mc: MessageCentralClient, container: Container, clock: FrozenClock
) -> None:
    assert (await _post(mc, OTP, "k-4")).json()["responseCode"] == 200
    clock.advance(timedelta(hours=24).total_seconds())
    await mc.fetch_token()
    later = await _post(mc, {**OTP, "mobileNumber": "9876543211"}, "k-4")
    assert later.json()["responseCode"] == 200, later.json()
    assert "Idempotent-Replayed" not in later.headers
    clock.advance(timedelta(hours=24).total_seconds())
    assert await container.idempotency.purge_expired(clock.now()) == 1
    assert await _count(container, idempotency_keys) == 0


async def test_without_the_header_nothing_is_stored(
    mc: MessageCentralClient, container: Container
) -> None:
    assert (await _post(mc, OTP, None)).json()["responseCode"] == 200
    assert await _count(container, idempotency_keys) == 0


@pytest.mark.parametrize("key", [b"", b"x" * 256, "caf\u00e9".encode(), b"tab\there"])
async def test_a_malformed_key_is_refused(mc: MessageCentralClient, key: bytes) -> None:
    response = await mc.http.post(
        SEND,
        params=OTP,
        headers=[(b"authToken", (mc.token or "").encode()), (b"Idempotency-Key", key)],
    )
    body = response.json()
    assert body["responseCode"] == 400
    assert "Idempotency-Key must be 1–255 printable ASCII characters" in body["errorMessage"]


async def test_errors_below_500_are_stored_and_replayed(mc: MessageCentralClient) -> None:
    bad = {**OTP, "otpLength": "3"}
    first = await _post(mc, bad, "k-5")
    assert first.json()["responseCode"] == 400
    again = await _post(mc, bad, "k-5")
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_a_validation_retried_with_its_key_answers_success_again(
    mc: MessageCentralClient,
) -> None:
    sent = (await _post(mc, OTP, None)).json()["data"]

    async def arrived() -> bool:
        return any(e["destination"] == "+91" + NUMBER for e in await mc.outbox())

    await eventually(arrived)
    code = await mc.sandbox_code("+91" + NUMBER)
    params = {"verificationId": sent["verificationId"], "code": code}
    headers = mc.headers() | {"Idempotency-Key": "check-1"}
    url = "/verification/v3/validateOtp"
    first = await mc.http.post(url, params=params, headers=headers)
    again = await mc.http.post(url, params=params, headers=headers)
    assert first.json()["responseCode"] == again.json()["responseCode"] == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    plain = await mc.http.post(url, params=params, headers=mc.headers())
    assert plain.json()["responseCode"] == 703


def _workbook(rows: list[tuple[int, int]]) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ("Country", "Mobile"))
    for number, row in enumerate(rows, start=1):
        sheet.write_row(number, 0, row)
    book.close()
    return buffer.getvalue()


async def test_an_xlsx_campaign_retried_with_its_key_is_staged_once(
    mc: MessageCentralClient, container: Container
) -> None:
    content = _workbook([(91, 9816111111), (91, 9816111112)])
    params = {k: v for k, v in SMS.items() if k not in ("countryCode", "mobileNumber")}

    async def upload() -> httpx.Response:
        # httpx draws a new multipart boundary per request: the raw bodies differ
        return await _post(mc, params, "campaign-1",
                           files={"file": ("r.xlsx", content, "application/octet-stream")})  # fmt: skip

    first, again = await upload(), await upload()
    assert first.json()["responseCode"] == 200, first.json()
    assert again.content == first.content
    assert await _count(container, campaigns) == 1
    other = await _post(mc, params, "campaign-1", files={
        "file": ("r.xlsx", _workbook([(91, 9816111113)]), "application/octet-stream")})  # fmt: skip
    assert other.status_code == 409


async def test_a_key_left_by_a_crashed_request_is_free_once_its_lease_lapses(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: object
) -> None:
    built = build_container(make_settings(idempotency={"lease_s": 30, "wait_s": 0.3}), clock=clock)
    mc = await start_api(built)  # type: ignore[operator]
    account_id = mc.customer_id
    now = clock.now()
    crashed = IdempotencyRecord(
        account_id=account_id, route="send", key="k-6", fingerprint="0" * 64, owner="gone",
        state=KeyState.IN_PROGRESS, status_code=None, content_type=None, body=None,
        created_at=now, lease_until=now + timedelta(seconds=30),
        expires_at=now + timedelta(days=1),
    )  # fmt: skip
    assert await built.idempotency.claim(crashed, now) is None
    # its fingerprint is another request's: refused while the lease holds
    assert (await _post(mc, OTP, "k-6")).status_code == 409
    clock.advance(31)
    await mc.fetch_token()
    retried = await _post(mc, OTP, "k-6")
    assert retried.json()["responseCode"] == 200, retried.json()
    assert await _count(built, verifications) == 1


async def test_a_duplicate_waits_at_most_wait_s_for_a_first_request_that_hangs(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: object
) -> None:
    from switchboard.domain.idempotency import fingerprint

    built = build_container(make_settings(idempotency={"lease_s": 30, "wait_s": 0.3}), clock=clock)
    mc = await start_api(built)  # type: ignore[operator]
    now = clock.now()
    digest = fingerprint("POST", "send", {k.lower(): v for k, v in OTP.items()}, {})
    hung = IdempotencyRecord(
        account_id=mc.customer_id, route="send", key="k-7", fingerprint=digest, owner="busy",
        state=KeyState.IN_PROGRESS, status_code=None, content_type=None, body=None,
        created_at=now, lease_until=now + timedelta(seconds=30),
        expires_at=now + timedelta(days=1),
    )  # fmt: skip
    assert await built.idempotency.claim(hung, now) is None
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await _post(mc, OTP, "k-7")
    assert 0.25 <= loop.time() - started < 5
    assert response.status_code == 409
    assert "still in progress" in response.json()["errorMessage"]
    assert response.headers["Retry-After"] == "1"
    await built.idempotency.release(mc.customer_id, "send", "k-7", "busy")

    async def runs_now() -> bool:
        return bool((await _post(mc, OTP, "k-7")).json()["responseCode"] == 200)

    await eventually(runs_now, timeout_s=5)
