"""WhatsAppDriver against the fake Graph API over loopback HTTP, webhooks included."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from switchboard.channels.base import (
    DeliveryReport,
    InboundMessage,
    OutboundMessage,
    ReportState,
    SendError,
    SendErrorKind,
)
from switchboard.channels.webhooks import WebhookError, WebhookSignatureError
from switchboard.channels.whatsapp import WhatsAppDriver, WhatsAppOptions
from switchboard.clock import FrozenClock
from switchboard.domain.messages import Channel, MessageType
from switchboard.testing.loopback import LoopbackServer
from switchboard.testing.whatsapp_peer import Template, WhatsAppPeer

VERIFY_TOKEN = "verify-me-please"
USER = "+919812345678"


class RecordingSink:
    def __init__(self) -> None:
        self.reports: list[DeliveryReport] = []
        self.inbound: list[InboundMessage] = []

    async def on_report(self, report: DeliveryReport) -> None:
        self.reports.append(report)

    async def on_inbound(self, message: InboundMessage) -> None:
        self.inbound.append(message)


def otp(code: str = "482913", *, message_id: str = "msg-otp-1") -> OutboundMessage:
    return OutboundMessage(
        id=message_id,
        account_id="acct-1",
        channel=Channel.WHATSAPP,
        message_type=MessageType.OTP,
        destination=USER,
        sender=None,
        text=f"{code} is your code",
        otp_code=code,
    )


def text(body: str = "Your order has shipped", *, message_id: str = "msg-txt-1") -> OutboundMessage:
    return OutboundMessage(
        id=message_id,
        account_id="acct-1",
        channel=Channel.WHATSAPP,
        message_type=MessageType.TRANSACTIONAL,
        destination=USER,
        sender=None,
        text=body,
    )


def options_for(peer: WhatsAppPeer, **overrides: object) -> WhatsAppOptions:
    values: dict[str, object] = {
        "base_url": peer.url,
        "phone_number_id": peer.phone_number_id,
        "access_token": peer.access_token,
        "app_secret": peer.app_secret,
        "verify_token": VERIFY_TOKEN,
        "timeout_s": 2.0,
    }
    values.update(overrides)
    return WhatsAppOptions.model_validate(values)


@pytest.fixture
async def peer() -> AsyncIterator[WhatsAppPeer]:
    peer = WhatsAppPeer()
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def driver(peer: WhatsAppPeer, sink: RecordingSink) -> AsyncIterator[WhatsAppDriver]:
    driver = WhatsAppDriver("wa-main", options_for(peer))
    await driver.start(sink)
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
async def webhook_url(driver: WhatsAppDriver) -> AsyncIterator[str]:
    """Our side of the webhook, the way the API route will serve it."""

    async def whatsapp_webhook(request: Request) -> Response:
        if request.method == "GET":
            query = request.query_params
            challenge = driver.verify_handshake(
                query.get("hub.mode"), query.get("hub.verify_token"), query.get("hub.challenge")
            )
            if challenge is None:
                return Response(status_code=403)
            return PlainTextResponse(challenge)
        try:
            await driver.receive_webhook(request.headers, await request.body())
        except WebhookSignatureError:
            return Response(status_code=401)
        except WebhookError:
            return Response(status_code=400)
        return Response(status_code=200)

    app = Starlette(routes=[Route("/webhooks/whatsapp", whatsapp_webhook, methods=["GET", "POST"])])
    async with LoopbackServer(app) as server:
        yield f"{server.url}/webhooks/whatsapp"


async def test_otp_goes_as_authentication_template_with_the_code_in_body_and_button(
    peer: WhatsAppPeer, driver: WhatsAppDriver
) -> None:
    result = await driver.send(otp("482913"))

    assert result.provider_ids == (peer.accepted[0].wamid,)
    request = peer.requests[0]
    assert request.headers["authorization"] == f"Bearer {peer.access_token}"
    payload = request.json()
    assert payload["to"] == "919812345678"
    assert payload["biz_opaque_callback_data"] == "msg-otp-1"
    template = payload["template"]
    assert template["name"] == "otp_login"
    assert template["language"] == {"code": "en_US"}
    body, button = template["components"]
    assert body["parameters"] == [{"type": "text", "text": "482913"}]
    assert button["sub_type"] == "url"
    assert button["parameters"] == [{"type": "text", "text": "482913"}]


async def test_text_inside_the_window_goes_as_text_without_link_preview(
    peer: WhatsAppPeer, driver: WhatsAppDriver
) -> None:
    peer.open_window(USER)

    await driver.send(text("Hello there"))

    payload = peer.requests[0].json()
    assert payload["type"] == "text"
    assert payload["text"] == {"preview_url": False, "body": "Hello there"}
    assert payload["biz_opaque_callback_data"] == "msg-txt-1"


async def test_text_outside_the_window_without_a_template_is_permanent(
    driver: WhatsAppDriver,
) -> None:
    with pytest.raises(SendError) as caught:
        await driver.send(text())

    assert caught.value.kind is SendErrorKind.PERMANENT
    assert caught.value.provider_code == "131047"


async def test_text_outside_the_window_is_resent_as_the_text_template(
    peer: WhatsAppPeer, sink: RecordingSink
) -> None:
    peer.templates["notice"] = Template(
        name="notice", language="en_US", category="UTILITY", body="Update: {{1}}"
    )
    driver = WhatsAppDriver("wa-main", options_for(peer, text_template="notice"))
    await driver.start(sink)
    try:
        result = await driver.send(text("Line one\nline two"))
    finally:
        await driver.close()

    assert result.provider_ids == (peer.accepted[0].wamid,)
    template = peer.accepted[0].payload["template"]
    assert template["name"] == "notice"
    assert template["components"][0]["parameters"][0]["text"] == "Line one line two"


@pytest.mark.parametrize("code", [131026, 131030, 131051, 133010, 132000, 132015, 368, 100])
async def test_refusals_are_permanent_so_a_fallback_channel_can_take_over(
    peer: WhatsAppPeer, driver: WhatsAppDriver, code: int
) -> None:
    peer.fail_next(code)

    with pytest.raises(SendError) as caught:
        await driver.send(otp())

    assert caught.value.kind is SendErrorKind.PERMANENT
    assert caught.value.provider_code == str(code)
    assert driver.is_available()


@pytest.mark.parametrize("code", [130429, 131056, 4, 80007, 131000, 131016])
async def test_throttling_and_outages_are_transient_with_a_retry_delay(
    peer: WhatsAppPeer, driver: WhatsAppDriver, code: int
) -> None:
    peer.fail_next(code)

    with pytest.raises(SendError) as caught:
        await driver.send(otp())

    assert caught.value.kind is SendErrorKind.TRANSIENT
    assert caught.value.provider_code == str(code)
    assert caught.value.retry_after_s is not None
    assert caught.value.retry_after_s > 0


async def test_http_429_without_a_graph_body_is_transient(
    peer: WhatsAppPeer, driver: WhatsAppDriver
) -> None:
    peer.fail_next(999999, http_status=429)

    with pytest.raises(SendError) as caught:
        await driver.send(otp())

    assert caught.value.kind is SendErrorKind.TRANSIENT


async def test_allow_list_rejection_comes_from_the_peer_rules(
    peer: WhatsAppPeer, driver: WhatsAppDriver
) -> None:
    peer.allow_list = {"15550009999"}

    with pytest.raises(SendError) as caught:
        await driver.send(otp())

    assert caught.value.provider_code == "131030"
    assert peer.accepted == []


async def test_a_rejected_token_is_permanent_and_the_driver_steps_aside_for_a_minute(
    peer: WhatsAppPeer, sink: RecordingSink
) -> None:
    clock = FrozenClock()
    driver = WhatsAppDriver("wa-main", options_for(peer, access_token="revoked"), clock=clock)
    await driver.start(sink)
    try:
        with pytest.raises(SendError) as caught:
            await driver.send(otp())
        assert caught.value.kind is SendErrorKind.PERMANENT
        assert caught.value.provider_code == "190"
        assert not driver.is_available()
        clock.advance(61)
        assert driver.is_available()
    finally:
        await driver.close()


async def test_a_response_timeout_after_the_request_left_is_ambiguous(
    peer: WhatsAppPeer, sink: RecordingSink
) -> None:
    driver = WhatsAppDriver("wa-main", options_for(peer, timeout_s=0.3))
    await driver.start(sink)
    peer.delay_next(1.5)
    try:
        with pytest.raises(SendError) as caught:
            await driver.send(otp())
    finally:
        await driver.close()

    assert caught.value.kind is SendErrorKind.AMBIGUOUS
    assert len(peer.accepted) == 1  # Meta did take it: resending would be a second OTP


async def test_an_unreachable_graph_api_is_transient(sink: RecordingSink) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    options = WhatsAppOptions(
        base_url=f"http://127.0.0.1:{closed_port}",
        phone_number_id="1",
        access_token="t",
        app_secret="s",
        verify_token="v",
        timeout_s=2,
    )
    driver = WhatsAppDriver("wa-main", options)
    await driver.start(sink)
    try:
        with pytest.raises(SendError) as caught:
            await driver.send(otp())
    finally:
        await driver.close()

    assert caught.value.kind is SendErrorKind.TRANSIENT


async def test_a_closed_driver_refuses_sends_as_transient(driver: WhatsAppDriver) -> None:
    await driver.close()

    assert not driver.is_available()
    with pytest.raises(SendError) as caught:
        await driver.send(otp())
    assert caught.value.kind is SendErrorKind.TRANSIENT


async def test_subscription_handshake_echoes_the_challenge_only_for_our_token(
    peer: WhatsAppPeer, webhook_url: str
) -> None:
    accepted = await peer.verify_subscription(webhook_url, VERIFY_TOKEN, "1158201444")
    refused = await peer.verify_subscription(webhook_url, "guess", "1158201444")

    assert (accepted.status_code, accepted.text) == (200, "1158201444")
    assert refused.status_code == 403
    assert "1158201444" not in refused.text


async def test_status_webhooks_reach_the_sink_with_our_message_id_and_times(
    peer: WhatsAppPeer, driver: WhatsAppDriver, sink: RecordingSink, webhook_url: str
) -> None:
    [wamid] = (await driver.send(otp())).provider_ids

    # Meta may send read before delivered, and may repeat itself: report all of it.
    for status in ("sent", "read", "delivered", "delivered"):
        response = await peer.emit_status(webhook_url, wamid, status)
        assert response.status_code == 200

    assert [r.state for r in sink.reports] == [
        ReportState.SENT,
        ReportState.READ,
        ReportState.DELIVRD,
        ReportState.DELIVRD,
    ]
    assert {r.provider_id for r in sink.reports} == {wamid}
    assert {r.raw["biz_opaque_callback_data"] for r in sink.reports} == {"msg-otp-1"}
    assert all(r.connector == "wa-main" for r in sink.reports)
    assert all(r.done_at is not None and r.done_at.tzinfo is UTC for r in sink.reports)


async def test_a_failed_status_reports_undeliverable_with_the_meta_code(
    peer: WhatsAppPeer, driver: WhatsAppDriver, sink: RecordingSink, webhook_url: str
) -> None:
    [wamid] = (await driver.send(otp())).provider_ids

    await peer.emit_status(webhook_url, wamid, "failed", error_code=131026)

    [report] = sink.reports
    assert report.state is ReportState.UNDELIV
    assert report.error_code == "131026"


async def test_a_forged_webhook_is_refused_and_reaches_nothing(
    peer: WhatsAppPeer, driver: WhatsAppDriver, sink: RecordingSink, webhook_url: str
) -> None:
    [wamid] = (await driver.send(otp())).provider_ids
    body = peer.status_body(wamid, "delivered")

    response = await peer.emit(webhook_url, body, signature="sha256=" + "0" * 64)

    assert response.status_code == 401
    assert sink.reports == []


async def test_an_inbound_text_reaches_the_sink(
    peer: WhatsAppPeer, sink: RecordingSink, webhook_url: str
) -> None:
    response = await peer.emit_inbound(webhook_url, USER, "STOP ✋")

    assert response.status_code == 200
    [message] = sink.inbound
    assert message.source == USER
    assert message.destination == f"+{peer.display_phone_number}"
    assert message.text == "STOP ✋"
    assert message.channel is Channel.WHATSAPP
    assert message.received_at <= datetime.now(UTC)
