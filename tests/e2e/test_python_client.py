"""switchboard.client (sync and async) against a real uvicorn server on 127.0.0.1, both databases."""

from __future__ import annotations

import asyncio
import io

import pytest
import sqlalchemy as sa
import xlsxwriter
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tests.e2e.conftest import eventually
from tests.e2e.served import E164, NUMBER, Serve, serve_fixture  # noqa: F401 (the fixture)

from switchboard.client import (
    AlreadyVerifiedError,
    AsyncClient,
    BadRequestError,
    Credentials,
    InvalidCustomerIdError,
    InvalidVerificationIdError,
    MaximumLimitReachedError,
    MessageOptions,
    RequestAlreadyExistsError,
    Retries,
    SwitchboardConnectionError,
    VerificationExpiredError,
    WrongOtpError,
)
from switchboard.storage.sql.tables import verifications

SMS = MessageOptions(sender_id="ACMEIN", message_type="TRANSACTIONAL")


async def test_async_client_sends_and_validates_a_code(serve: Serve) -> None:
    served = await serve()
    async with served.client() as api:
        sent = await api.send_otp("91", NUMBER)
        assert sent.verification_id.isdigit()
        assert (sent.mobile_number, sent.timeout_s) == (NUMBER, 60)
        code = await served.code_sent_to(api, E164)
        checked = await api.validate_otp(sent.verification_id, code)
        assert checked.verification_status == "VERIFICATION_COMPLETED"
        status = await api.verification(sent.verification_id)
        assert (status.status, status.attempts) == ("VERIFIED", 1)


async def test_sync_client_sends_and_validates_a_code(serve: Serve) -> None:
    served = await serve()
    with served.sync_client() as api:
        sent = await asyncio.to_thread(api.send_otp, "91", NUMBER)
        async with served.client() as reader:
            code = await served.code_sent_to(reader, E164)
        checked = await asyncio.to_thread(api.validate_otp, sent.verification_id, code)
        assert checked.verification_status == "VERIFICATION_COMPLETED"
        with pytest.raises(AlreadyVerifiedError) as again:
            await asyncio.to_thread(api.validate_otp, sent.verification_id, code)
        assert again.value.code == 703


async def test_an_email_code_needs_only_the_address(serve: Serve) -> None:
    served = await serve()
    async with served.client() as api:
        sent = await api.send_otp(flow_type="EMAIL", email="ana@example.com")
        code = await served.code_sent_to(api, "ana@example.com")
        assert (await api.validate_otp(sent.verification_id, code)).verification_id


async def test_the_token_is_renewed_before_it_expires(serve: Serve) -> None:
    served = await serve(tokens={"ttl_s": 120})
    async with served.client(renew_before_s=30) as api:
        first = await api.token()
        served.clock.advance(60)
        assert await api.token() == first  # 60 s before exp: still good
        served.clock.advance(31)
        renewed = await api.token()
        assert renewed != first
        served.clock.advance(60)  # the first token has expired; the renewed one carries on
        assert (await api.send_otp("91", NUMBER)).verification_id


async def test_a_list_and_an_xlsx_campaign_and_their_reports(serve: Serve) -> None:
    served = await serve()
    async with served.client() as api:
        listed = await api.send_sms_list(["91 9816111111", "91 9816111112"], "Sale today", SMS)
        assert (listed.total, listed.accepted, listed.invalid) == (2, 2, 0)
        buffer = io.BytesIO()
        book = xlsxwriter.Workbook(buffer, {"in_memory": True})
        sheet = book.add_worksheet()
        for row, values in enumerate([("Country", "Mobile", "var1"), (91, 9816111113, "Asha"),
                                      (91, 123, "Bad"), (91, 9816111114, "Bo")]):  # fmt: skip
            sheet.write_row(row, 0, values)
        book.close()
        filed = await api.send_sms_file(buffer.getvalue(), "Hello ##var1##", SMS)
        assert (filed.accepted, filed.invalid) == (2, 1)
        assert filed.errors[0]["row"] == 3

        async def delivered() -> bool:
            campaign = await api.campaign(filed.campaign_id)
            return campaign.delivered == 2

        await eventually(delivered)
        report = await api.campaign_report(filed.campaign_id)
        assert sorted(r.destination for r in report) == ["+919816111113", "+919816111114"]
        assert {(r.status, r.delivery_status) for r in report} == {("DELIVERED", "DELIVRD")}
        message = await api.message(report[0].message_id)
        assert (message.campaign_id, message.status) == (filed.campaign_id, "DELIVERED")
        assert (await api.campaign(listed.campaign_id)).total == 2


async def test_a_single_sms_is_sent_and_its_status_read(serve: Serve) -> None:
    served = await serve()
    async with served.client() as api:
        sent = await api.send_sms("91", NUMBER, "Your order shipped", SMS)
        assert (sent.encoding, sent.segments) == ("GSM7", 1)

        async def delivered() -> bool:
            return (await api.message(sent.message_id)).status == "DELIVERED"

        await eventually(delivered)


async def test_callbacks_are_read_and_set(serve: Serve) -> None:
    served = await serve()
    async with served.client() as api:
        assert (await api.callback()).callback_url is None
        configured = await api.set_callback("http://127.0.0.1:9/hook")
        assert configured.callback_url == "http://127.0.0.1:9/hook"
        assert (configured.secret or "").startswith("whsec_")
        again = await api.callback()
        assert (again.callback_url, again.secret, again.enabled) == (
            "http://127.0.0.1:9/hook", None, True,
        )  # fmt: skip


async def test_each_refusal_is_its_own_exception(serve: Serve) -> None:
    served = await serve(otp={"account_daily_quota": 3})
    async with served.client() as api:
        with pytest.raises(BadRequestError, match="otpLength must be between 4 and 8") as bad:
            await api.send_otp("91", NUMBER, otp_length=3)
        assert (bad.value.code, bad.value.http_status) == (400, 400)
        with pytest.raises(InvalidVerificationIdError):
            await api.validate_otp("123", "1234")
        sent = await api.send_otp("91", NUMBER)
        with pytest.raises(RequestAlreadyExistsError) as cooldown:
            await api.send_otp("91", NUMBER)
        assert 0 < (cooldown.value.retry_after_s or 0) <= 30
        with pytest.raises(WrongOtpError, match="attempts left"):
            await api.validate_otp(sent.verification_id, "0000")
        served.clock.advance(61)
        with pytest.raises(VerificationExpiredError):
            await api.validate_otp(sent.verification_id, "0000")
        await api.send_otp("91", "9876543211")
        await api.send_otp("91", "9876543212")
        with pytest.raises(MaximumLimitReachedError) as quota:
            await api.send_otp("91", "9876543213")
        assert quota.value.code == 800
    wrong = Credentials(customer_id="C-1", password="not the password")
    async with AsyncClient(served.url, wrong, clock=served.now) as stranger:
        with pytest.raises(InvalidCustomerIdError):
            await stranger.send_otp("91", NUMBER)
    # refused once, not asked again: each try counts towards the account's lockout
    assert (await served.container.accounts.get("C-1")).consecutive_failures == 1
    async with AsyncClient(served.url, token="not-a-token") as bare:
        with pytest.raises(InvalidCustomerIdError) as refused:
            await bare.send_otp("91", NUMBER)
        assert refused.value.code == 501


class _LoseFirstSend:
    """The first send runs to its commit, then its answer is held past the client's timeout
    (a timeout after the server did the work) — or, with `fail`, it gets a 503 instead."""

    def __init__(
        self, app: ASGIApp, *, fail: bool = False, path: str = "/verification/v3/send"
    ) -> None:
        self.app = app
        self.fail = fail
        self.path = path
        self.sends = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        self.sends += 1
        if self.sends > 1:
            await self.app(scope, receive, send)
            return
        if self.fail:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"busy"})
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        await asyncio.sleep(2)
        for message in held:
            await send(message)


async def test_a_send_retried_after_a_timeout_is_sent_once(serve: Serve) -> None:
    faults: list[_LoseFirstSend] = []

    def wrap(app: ASGIApp) -> ASGIApp:
        faults.append(_LoseFirstSend(app))
        return faults[0]

    served = await serve(wrap=wrap)
    async with served.client(timeout_s=0.5, retries=Retries(attempts=3, backoff_s=0.05)) as api:
        await api.token()
        sent = await api.send_otp("91", NUMBER)
    assert faults[0].sends == 2
    assert await served.count(verifications) == 1
    async with served.container.database.read() as connection:
        stored = (await connection.execute(sa.select(verifications.c.id))).scalar_one()
    assert sent.verification_id == str(stored)


async def test_a_validation_retried_after_a_lost_answer_answers_success(serve: Serve) -> None:
    served = await serve(wrap=lambda app: _LoseFirstSend(app, path="/verification/v3/validateOtp"))
    async with served.client(timeout_s=0.5, retries=Retries(attempts=3, backoff_s=0.05)) as api:
        sent = await api.send_otp("91", NUMBER)
        code = await served.code_sent_to(api, E164)
        checked = await api.validate_otp(sent.verification_id, code)  # not 703 on the retry
        assert checked.verification_status == "VERIFICATION_COMPLETED"


async def test_a_send_retried_after_a_5xx_is_sent_once(serve: Serve) -> None:
    served = await serve(wrap=lambda app: _LoseFirstSend(app, fail=True))
    async with served.client(retries=Retries(attempts=2, backoff_s=0.05)) as api:
        assert (await api.send_otp("91", NUMBER)).verification_id
    assert await served.count(verifications) == 1


async def test_a_revoked_token_is_replaced_once_and_the_call_goes_through(serve: Serve) -> None:
    served = await serve()
    async with served.client() as api:
        first = await api.token()
        await served.container.accounts.revoke_tokens("C-1")
        assert (await api.send_otp("91", NUMBER)).verification_id
        assert await api.token() != first


async def test_no_answer_at_all_is_a_connection_error_after_bounded_retries() -> None:
    async with AsyncClient(
        "http://127.0.0.1:9", token="t", retries=Retries(attempts=2, backoff_s=0.01)
    ) as api:
        with pytest.raises(SwitchboardConnectionError):
            await api.send_otp("91", NUMBER)
