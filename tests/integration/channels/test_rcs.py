"""RcsDriver against the fake RBM over loopback HTTP: OAuth2, sends, revokes and webhooks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
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
from switchboard.channels.rcs import RcsDriver, RcsOptions
from switchboard.channels.webhooks import WebhookError, WebhookSignatureError
from switchboard.clock import FrozenClock
from switchboard.domain.messages import Channel, MessageType
from switchboard.errors import ConfigurationError
from switchboard.testing.loopback import LoopbackServer
from switchboard.testing.rbm_peer import SCOPE, RbmPeer

CLIENT_EMAIL = "rbm-sender@switchboard-test.iam.gserviceaccount.com"
USER = "+919812345678"


class RecordingSink:
    def __init__(self) -> None:
        self.reports: list[DeliveryReport] = []
        self.inbound: list[InboundMessage] = []

    async def on_report(self, report: DeliveryReport) -> None:
        self.reports.append(report)

    async def on_inbound(self, message: InboundMessage) -> None:
        self.inbound.append(message)


def message(
    message_type: MessageType = MessageType.OTP,
    *,
    message_id: str = "8c6bd0f5-7bd1-4a77-9e38-6b3b1e3c0d11",
    expires_at: datetime | None = None,
    text: str = "482913 is your Switchboard code",
) -> OutboundMessage:
    return OutboundMessage(
        id=message_id,
        account_id="acct-1",
        channel=Channel.RCS,
        message_type=message_type,
        destination=USER,
        sender=None,
        text=text,
        otp_code="482913" if message_type is MessageType.OTP else None,
        expires_at=expires_at,
    )


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def service_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_file(tmp_path: Path, service_key: rsa.RSAPrivateKey) -> Path:
    pem = service_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    document = {
        "type": "service_account",
        "project_id": "switchboard-test",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
async def peer(service_key: rsa.RSAPrivateKey) -> AsyncIterator[RbmPeer]:
    peer = RbmPeer(client_email=CLIENT_EMAIL, public_key_pem=public_pem(service_key))
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC))


def options_for(peer: RbmPeer, key_file: Path, **overrides: object) -> RcsOptions:
    values: dict[str, object] = {
        "base_url": peer.url,
        "token_url": peer.token_url,
        "agent_id": peer.agent_id,
        "service_account_file": key_file,
        "client_token": peer.client_token,
        "timeout_s": 2.0,
    }
    values.update(overrides)
    return RcsOptions.model_validate(values)


@pytest.fixture
async def driver(
    peer: RbmPeer, key_file: Path, sink: RecordingSink, clock: FrozenClock
) -> AsyncIterator[RcsDriver]:
    driver = RcsDriver("rbm-main", options_for(peer, key_file), clock=clock)
    await driver.start(sink)
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
async def webhook_url(driver: RcsDriver) -> AsyncIterator[str]:
    """Our side of the webhook, the way the API route will serve it: handshake, else an event."""

    async def rbm_webhook(request: Request) -> Response:
        body = await request.body()
        secret = driver.handshake(body)
        if secret is not None:
            return PlainTextResponse(secret)
        try:
            await driver.receive_webhook(request.headers, body)
        except WebhookSignatureError:
            return Response(status_code=401)
        except WebhookError:
            return Response(status_code=400)
        return Response(status_code=200)

    app = Starlette(routes=[Route("/webhooks/rbm", rbm_webhook, methods=["POST"])])
    async with LoopbackServer(app) as server:
        yield f"{server.url}/webhooks/rbm"


async def test_an_otp_goes_as_authentication_traffic_under_our_message_id(
    peer: RbmPeer, driver: RcsDriver, clock: FrozenClock
) -> None:
    outbound = message(expires_at=clock.now() + timedelta(seconds=120))

    result = await driver.send(outbound)

    assert result.provider_ids == (outbound.id,)
    [request] = peer.requests
    assert request.path == f"/v1/phones/{USER}/agentMessages"
    assert request.query == {"messageId": outbound.id, "agentId": peer.agent_id}
    assert request.headers["authorization"].startswith("Bearer ya29.fake-")
    assert request.json() == {
        "contentMessage": {"text": "482913 is your Switchboard code"},
        "messageTrafficType": "AUTHENTICATION",
        "ttl": "120s",  # the OTP's remaining validity, under the 600 s default
    }


@pytest.mark.parametrize(
    ("message_type", "traffic"),
    [(MessageType.TRANSACTIONAL, "TRANSACTION"), (MessageType.PROMOTIONAL, "PROMOTION")],
)
async def test_other_messages_carry_their_traffic_type_and_the_configured_ttl(
    peer: RbmPeer, driver: RcsDriver, message_type: MessageType, traffic: str
) -> None:
    await driver.send(message(message_type, text="Your parcel is on its way"))

    payload = peer.requests[0].json()
    assert payload["messageTrafficType"] == traffic
    assert payload["ttl"] == "600s"


async def test_the_assertion_is_an_rs256_jwt_bearer_grant_for_the_rbm_scope(
    peer: RbmPeer, driver: RcsDriver, service_key: rsa.RSAPrivateKey
) -> None:
    await driver.send(message())

    [token_request] = peer.token_requests
    form = {key: values[0] for key, values in parse_qs(token_request.body.decode()).items()}
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert jwt.get_unverified_header(form["assertion"])["kid"] == "0123456789abcdef"
    claims = jwt.decode(
        form["assertion"], public_pem(service_key), algorithms=["RS256"], audience=peer.token_url
    )
    assert claims["iss"] == CLIENT_EMAIL
    assert claims["scope"] == SCOPE
    assert claims["exp"] - claims["iat"] == 3600


async def test_the_access_token_is_cached_until_it_nears_expiry(
    peer: RbmPeer, driver: RcsDriver, clock: FrozenClock
) -> None:
    peer.clock = clock
    await driver.send(message(message_id="m-1"))
    await driver.send(message(message_id="m-2"))
    assert len(peer.token_requests) == 1

    clock.advance(3600 - 30)  # inside the refresh margin
    await driver.send(message(message_id="m-3"))

    assert len(peer.token_requests) == 2


async def test_a_revoked_access_token_is_replaced_once_and_the_send_goes_through(
    peer: RbmPeer, driver: RcsDriver
) -> None:
    await driver.send(message(message_id="m-1"))
    peer.revoke_tokens()

    result = await driver.send(message(message_id="m-2"))

    assert result.provider_ids == ("m-2",)
    assert len(peer.token_requests) == 2
    assert set(peer.messages) == {"m-1", "m-2"}


async def test_a_key_google_does_not_trust_is_permanent_and_the_driver_steps_aside(
    key_file: Path, sink: RecordingSink, clock: FrozenClock
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    peer = RbmPeer(client_email=CLIENT_EMAIL, public_key_pem=public_pem(stranger))
    await peer.start()
    driver = RcsDriver("rbm-main", options_for(peer, key_file), clock=clock)
    await driver.start(sink)
    try:
        with pytest.raises(SendError) as caught:
            await driver.send(message())
        assert caught.value.kind is SendErrorKind.PERMANENT
        assert not driver.is_available()
        clock.advance(61)
        assert driver.is_available()
    finally:
        await driver.close()
        await peer.stop()
    assert peer.messages == {}


async def test_a_phone_without_rcs_is_permanent_so_sms_can_take_over(
    peer: RbmPeer, driver: RcsDriver
) -> None:
    peer.not_rcs_capable.add(USER)

    with pytest.raises(SendError) as caught:
        await driver.send(message())

    assert caught.value.kind is SendErrorKind.PERMANENT
    assert caught.value.provider_code == "NOT_FOUND"


@pytest.mark.parametrize(
    ("status", "name"), [(400, "INVALID_ARGUMENT"), (403, "PERMISSION_DENIED")]
)
async def test_refusals_are_permanent(
    peer: RbmPeer, driver: RcsDriver, status: int, name: str
) -> None:
    peer.fail_next(status)

    with pytest.raises(SendError) as caught:
        await driver.send(message())

    assert (caught.value.kind, caught.value.provider_code) == (SendErrorKind.PERMANENT, name)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_quota_and_outages_are_transient_with_a_retry_delay(
    peer: RbmPeer, driver: RcsDriver, status: int
) -> None:
    peer.fail_next(status)

    with pytest.raises(SendError) as caught:
        await driver.send(message())

    assert caught.value.kind is SendErrorKind.TRANSIENT
    assert caught.value.retry_after_s is not None
    assert caught.value.retry_after_s > 0


async def test_retry_after_from_google_is_passed_on(peer: RbmPeer, driver: RcsDriver) -> None:
    peer.fail_next(429, retry_after_s=7)

    with pytest.raises(SendError) as caught:
        await driver.send(message())

    assert caught.value.retry_after_s == 7.0


async def test_a_retried_message_id_is_accepted_and_delivered_once(
    peer: RbmPeer, driver: RcsDriver
) -> None:
    first = await driver.send(message())
    second = await driver.send(message())

    assert first == second
    assert len(peer.messages) == 1


async def test_a_response_timeout_after_the_request_left_is_ambiguous(
    peer: RbmPeer, key_file: Path, sink: RecordingSink
) -> None:
    driver = RcsDriver("rbm-main", options_for(peer, key_file, timeout_s=0.3))
    await driver.start(sink)
    await driver.send(message(message_id="warm-up"))  # the token request is not the timed one
    peer.delay_next(1.5)
    try:
        with pytest.raises(SendError) as caught:
            await driver.send(message())
    finally:
        await driver.close()

    assert caught.value.kind is SendErrorKind.AMBIGUOUS
    assert len(peer.messages) == 2


async def test_an_otp_past_its_validity_is_not_sent(
    peer: RbmPeer, driver: RcsDriver, clock: FrozenClock
) -> None:
    with pytest.raises(SendError) as caught:
        await driver.send(message(expires_at=clock.now() - timedelta(seconds=1)))

    assert caught.value.kind is SendErrorKind.PERMANENT
    assert peer.requests == []


async def test_revoke_withdraws_an_undelivered_message_but_not_a_delivered_one(
    peer: RbmPeer, driver: RcsDriver
) -> None:
    pending = message(message_id="pending")
    delivered = message(message_id="delivered")
    await driver.send(pending)
    await driver.send(delivered)
    peer.user_event("delivered", "DELIVERED")

    assert await driver.revoke(pending) is True
    assert await driver.revoke(delivered) is False
    assert peer.messages["pending"].revoked
    assert peer.requests[-1].method == "DELETE"
    assert peer.requests[-1].query == {"agentId": peer.agent_id}


async def test_an_unreadable_service_account_file_stops_start(
    tmp_path: Path, peer: RbmPeer, sink: RecordingSink
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"client_email": "x", "private_key": "not a key"}')

    for path in (broken, tmp_path / "missing.json"):
        driver = RcsDriver("rbm-main", options_for(peer, path))
        with pytest.raises(ConfigurationError):
            await driver.start(sink)
        assert not driver.is_available()


async def test_the_setup_check_gets_the_secret_back_only_with_our_client_token(
    peer: RbmPeer, webhook_url: str
) -> None:
    accepted, secret = await peer.emit_handshake(webhook_url)
    refused, other_secret = await peer.emit_handshake(webhook_url, client_token="guess")

    assert (accepted.status_code, accepted.text) == (200, secret)
    assert refused.status_code == 401
    assert other_secret not in refused.text


async def test_delivery_read_and_revocation_events_reach_the_sink(
    peer: RbmPeer, driver: RcsDriver, sink: RecordingSink, webhook_url: str
) -> None:
    [delivered_id] = (await driver.send(message(message_id="m-delivered"))).provider_ids
    [expired_id] = (await driver.send(message(message_id="m-expired"))).provider_ids

    for event in (
        peer.user_event(delivered_id, "DELIVERED"),
        peer.user_event(delivered_id, "IS_TYPING"),
        peer.user_event(delivered_id, "READ"),
        peer.user_event(delivered_id, "DELIVERED"),  # Pub/Sub delivers at least once
        peer.server_event(expired_id),
    ):
        assert (await peer.emit(webhook_url, event)).status_code == 200

    assert [(r.provider_id, r.state) for r in sink.reports] == [
        ("m-delivered", ReportState.DELIVRD),
        ("m-delivered", ReportState.READ),
        ("m-delivered", ReportState.DELIVRD),
        ("m-expired", ReportState.EXPIRED),
    ]
    assert all(r.done_at is not None and r.connector == "rbm-main" for r in sink.reports)


async def test_a_user_reply_reaches_the_sink_as_inbound(
    peer: RbmPeer, sink: RecordingSink, webhook_url: str
) -> None:
    response = await peer.emit(webhook_url, peer.user_message(USER, "Thanks! 👍"))

    assert response.status_code == 200
    [inbound] = sink.inbound
    assert (inbound.source, inbound.destination, inbound.text) == (
        USER,
        peer.agent_id,
        "Thanks! 👍",
    )


async def test_a_forged_event_is_refused_and_reaches_nothing(
    peer: RbmPeer, driver: RcsDriver, sink: RecordingSink, webhook_url: str
) -> None:
    await driver.send(message())
    forged = peer.user_event(message().id, "DELIVERED")

    response = await peer.emit(webhook_url, forged, signature="AAAA" * 22)

    assert response.status_code == 401
    assert sink.reports == []
