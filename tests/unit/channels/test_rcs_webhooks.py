"""RBM webhook parsing: the setup handshake, X-Goog-Signature over the Pub/Sub data, events."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from switchboard.channels.base import DeliveryReport, InboundMessage, ReportState
from switchboard.channels.rcs import WEBHOOK_MAX_BODY_BYTES, RcsDriver, RcsOptions
from switchboard.channels.webhooks import (
    WebhookPayloadError,
    WebhookSignatureError,
    WebhookTooLargeError,
)
from switchboard.domain.messages import Channel

CLIENT_TOKEN = "fixture-client-token"
# A DELIVERED event, base64 as Pub/Sub carries it; the signature was computed with
# `openssl dgst -sha512 -hmac fixture-client-token -binary | base64`, not the code under test.
FIXTURE_DATA = (
    "eyJhZ2VudElkIjoic3dpdGNoYm9hcmQtdGVzdC1hZ2VudCIsInNlbmRlclBob25lTnVtYmVyIjoiKzkxOTgxMjM0NTY3OCIs"
    "ImV2ZW50VHlwZSI6IkRFTElWRVJFRCIsImV2ZW50SWQiOiJNeFIxIiwibWVzc2FnZUlkIjoibXNnLTQyIiwic2VuZFRpbW"
    "UiOiIyMDI2LTA1LTAxVDEwOjAwOjAwLjEyMzQ1NloifQ=="
)
FIXTURE_SIGNATURE = (
    "32ieoDlzrItxM4lincgCYtlz7ldwF0PwXk/hi5nGJVMxuQt2igtposVSbbVK6KXDmTi5fPJAJxqbZPl2WSDbhA=="
)


def driver() -> RcsDriver:
    options = RcsOptions(
        agent_id="switchboard-test-agent",
        service_account_file=Path("unused-until-start.json"),
        client_token=CLIENT_TOKEN,
    )
    return RcsDriver("rbm-main", options)


def push(
    data: str, *, attributes: dict[str, str] | None = None, indent: int | None = None
) -> bytes:
    message = {"attributes": attributes or {}, "data": data, "messageId": "1", "publishTime": "x"}
    return json.dumps(
        {"message": message, "subscription": "projects/p/subscriptions/s"}, indent=indent
    ).encode()


def signed(
    event: dict[str, object], *, attributes: dict[str, str] | None = None
) -> tuple[dict[str, str], bytes]:
    data = json.dumps(event).encode()
    digest = hmac.new(CLIENT_TOKEN.encode(), data, hashlib.sha512).digest()
    headers = {"X-Goog-Signature": base64.b64encode(digest).decode()}
    return headers, push(base64.b64encode(data).decode(), attributes=attributes)


def event(event_type: str, message_id: str = "msg-1") -> dict[str, object]:
    return {
        "agentId": "switchboard-test-agent",
        "senderPhoneNumber": "+919812345678",
        "eventType": event_type,
        "eventId": f"ev-{event_type}",
        "messageId": message_id,
        "sendTime": "2026-05-01T10:00:00Z",
    }


def test_a_fixture_with_a_known_signature_yields_its_delivery_report() -> None:
    [report] = driver().parse_webhook({"x-goog-signature": FIXTURE_SIGNATURE}, push(FIXTURE_DATA))

    assert report == DeliveryReport(
        connector="rbm-main",
        provider_id="msg-42",
        state=ReportState.DELIVRD,
        done_at=datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),
        raw={"event_type": "DELIVERED", "event_id": "MxR1", "phone": "+919812345678"},
    )


def test_tampered_event_data_is_refused() -> None:
    data = base64.b64decode(FIXTURE_DATA).replace(b"DELIVERED", b"READ")

    with pytest.raises(WebhookSignatureError):
        driver().parse_webhook(
            {"X-Goog-Signature": FIXTURE_SIGNATURE}, push(base64.b64encode(data).decode())
        )


def test_whitespace_normalised_event_data_is_refused() -> None:
    normalised = json.dumps(json.loads(base64.b64decode(FIXTURE_DATA)), indent=2).encode()

    with pytest.raises(WebhookSignatureError):
        driver().parse_webhook(
            {"X-Goog-Signature": FIXTURE_SIGNATURE}, push(base64.b64encode(normalised).decode())
        )


def test_the_envelope_around_the_signed_data_may_be_reformatted() -> None:
    # Google signs the decoded data, not the push envelope (research §3.1).
    body = push(FIXTURE_DATA, indent=4)

    assert len(driver().parse_webhook({"X-Goog-Signature": FIXTURE_SIGNATURE}, body)) == 1


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, push(FIXTURE_DATA)),
        ({"X-Goog-Signature": ""}, push(FIXTURE_DATA)),
        ({"X-Goog-Signature": FIXTURE_SIGNATURE[:-4]}, push(FIXTURE_DATA)),
        ({"X-Goog-Signature": "ßignature"}, push(FIXTURE_DATA)),
        ({"X-Goog-Signature": FIXTURE_SIGNATURE}, b"not json"),
        ({"X-Goog-Signature": FIXTURE_SIGNATURE}, b'{"message": {}}'),
        ({"X-Goog-Signature": FIXTURE_SIGNATURE}, push("***not base64***")),
        ({"X-Goog-Signature": FIXTURE_SIGNATURE}, b"[]"),
    ],
)
def test_a_missing_wrong_or_unverifiable_signature_is_refused(
    headers: dict[str, str], body: bytes
) -> None:
    with pytest.raises(WebhookSignatureError):
        driver().parse_webhook(headers, body)


def test_a_body_over_one_mebibyte_is_refused() -> None:
    with pytest.raises(WebhookTooLargeError):
        driver().parse_webhook({}, b" " * (WEBHOOK_MAX_BODY_BYTES + 1))


def test_signed_data_that_is_not_an_event_is_a_payload_error() -> None:
    data = b"not json"
    digest = base64.b64encode(hmac.new(CLIENT_TOKEN.encode(), data, hashlib.sha512).digest())

    with pytest.raises(WebhookPayloadError):
        driver().parse_webhook(
            {"X-Goog-Signature": digest.decode()}, push(base64.b64encode(data).decode())
        )


@pytest.mark.parametrize(
    ("event_type", "state"),
    [
        ("DELIVERED", ReportState.DELIVRD),
        ("READ", ReportState.READ),
        ("TTL_EXPIRATION_REVOKED", ReportState.EXPIRED),
        ("TTL_EXPIRATION_REVOKE_FAILED", ReportState.UNKNOWN),
    ],
)
def test_events_map_to_report_states(event_type: str, state: ReportState) -> None:
    headers, body = signed(event(event_type))

    [report] = driver().parse_webhook(headers, body)

    assert isinstance(report, DeliveryReport)
    assert (report.provider_id, report.state) == ("msg-1", state)


def test_a_duplicate_push_is_reported_again() -> None:
    headers, body = signed(event("DELIVERED"))

    first = driver().parse_webhook(headers, body)
    second = driver().parse_webhook(headers, body)

    assert first == second
    assert len(first) == 1


def test_typing_indicators_and_launch_events_report_nothing() -> None:
    typing_headers, typing_body = signed(event("IS_TYPING"))
    launch_headers, launch_body = signed(
        {"agentId": "a", "launchState": "LAUNCHED"}, attributes={"type": "agent_launch_event"}
    )

    assert driver().parse_webhook(typing_headers, typing_body) == []
    assert driver().parse_webhook(launch_headers, launch_body) == []


def test_user_text_and_suggestion_replies_are_inbound_messages() -> None:
    base = {
        "senderPhoneNumber": "+919812345678",
        "messageId": "user-1",
        "sendTime": "2026-05-01T10:00:05Z",
        "agentId": "switchboard-test-agent",
    }
    text_headers, text_body = signed({**base, "text": "Hi"})
    reply = {"postbackData": "resend", "text": "Resend", "type": "REPLY"}
    reply_headers, reply_body = signed({**base, "suggestionResponse": reply})
    file_headers, file_body = signed({**base, "userFile": {"payload": {"fileUri": "x"}}})

    [message] = driver().parse_webhook(text_headers, text_body)
    [suggestion] = driver().parse_webhook(reply_headers, reply_body)

    assert message == InboundMessage(
        connector="rbm-main",
        channel=Channel.RCS,
        source="+919812345678",
        destination="switchboard-test-agent",
        text="Hi",
        received_at=datetime(2026, 5, 1, 10, 0, 5, tzinfo=UTC),
    )
    assert isinstance(suggestion, InboundMessage)
    assert suggestion.text == "Resend"
    assert driver().parse_webhook(file_headers, file_body) == []


def test_handshake_echoes_the_secret_only_for_our_client_token() -> None:
    rbm = driver()

    def body(**fields: object) -> bytes:
        return json.dumps(fields).encode()

    assert rbm.handshake(body(clientToken=CLIENT_TOKEN, secret="s3cr3t")) == "s3cr3t"
    assert rbm.handshake(body(clientToken="fixture-client-tokem", secret="s3cr3t")) is None
    assert rbm.handshake(body(clientToken=CLIENT_TOKEN)) is None
    assert rbm.handshake(body(clientToken=CLIENT_TOKEN, secret="s", extra=1)) is None
    assert rbm.handshake(body(clientToken=1, secret="s")) is None
    assert rbm.handshake(b"not json") is None
    assert rbm.handshake(push(FIXTURE_DATA)) is None
