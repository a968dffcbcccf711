"""WhatsApp webhook parsing: signature over the raw bytes first, then statuses and messages."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from switchboard.channels.base import DeliveryReport, InboundMessage, ReportState
from switchboard.channels.webhooks import (
    WebhookPayloadError,
    WebhookSignatureError,
    WebhookTooLargeError,
)
from switchboard.channels.whatsapp import WEBHOOK_MAX_BODY_BYTES, WhatsAppDriver, WhatsAppOptions

APP_SECRET = "fixture-app-secret"
# One delivered status, byte for byte; its HMAC was computed with
# `openssl dgst -sha256 -hmac fixture-app-secret`, not with the code under test.
FIXTURE_BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"200000000000001","changes":[{"field":'
    b'"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":'
    b'"15550001111","phone_number_id":"100000000000001"},"statuses":[{"id":'
    b'"wamid.HBgMOTE5ODEyMzQ1Njc4FQIAERgSQzVGRkI2","status":"delivered","timestamp":"1764070000",'
    b'"recipient_id":"919812345678","biz_opaque_callback_data":"msg-42"}]}}]}]}'
)
FIXTURE_SIGNATURE = "sha256=399954dc98e02bef4fb35aa5dd03e9c5e5080d25720798d53fc0420f4d0bdfca"


def driver() -> WhatsAppDriver:
    options = WhatsAppOptions(
        phone_number_id="100000000000001",
        access_token="token",
        app_secret=APP_SECRET,
        verify_token="verify-token",
    )
    return WhatsAppDriver("wa-main", options)


def signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}"}


def envelope(**value: object) -> bytes:
    document = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "200000000000001",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550001111",
                                "phone_number_id": "100000000000001",
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def status(
    wamid: str, state: str, timestamp: int = 1764070000, **extra: object
) -> dict[str, object]:
    return {
        "id": wamid,
        "status": state,
        "timestamp": str(timestamp),
        "recipient_id": "919812345678",
        **extra,
    }


def test_a_fixture_with_a_known_signature_yields_its_delivery_report() -> None:
    [report] = driver().parse_webhook({"x-hub-signature-256": FIXTURE_SIGNATURE}, FIXTURE_BODY)

    assert report == DeliveryReport(
        connector="wa-main",
        provider_id="wamid.HBgMOTE5ODEyMzQ1Njc4FQIAERgSQzVGRkI2",
        state=ReportState.DELIVRD,
        done_at=datetime.fromtimestamp(1764070000, UTC),
        raw={
            "status": "delivered",
            "recipient_id": "919812345678",
            "biz_opaque_callback_data": "msg-42",
        },
    )


def test_a_tampered_body_is_refused() -> None:
    tampered = FIXTURE_BODY.replace(b'"delivered"', b'"read"')

    with pytest.raises(WebhookSignatureError):
        driver().parse_webhook({"X-Hub-Signature-256": FIXTURE_SIGNATURE}, tampered)


def test_a_whitespace_normalised_body_is_refused() -> None:
    normalised = json.dumps(json.loads(FIXTURE_BODY), indent=2).encode()

    with pytest.raises(WebhookSignatureError):
        driver().parse_webhook({"X-Hub-Signature-256": FIXTURE_SIGNATURE}, normalised)


def test_a_re_encoded_unicode_body_is_refused_while_the_escaped_original_passes() -> None:
    # Meta signs the escaped form (\u00e9); re-serialising as UTF-8 changes the bytes.
    inbound: dict[str, object] = {
        "from": "919812345678",
        "id": "wamid.X",
        "timestamp": "1764070000",
    }
    inbound |= {"type": "text", "text": {"body": "Café"}}
    original = envelope(messages=[inbound])
    assert b"\\u00e9" in original
    re_encoded = json.dumps(json.loads(original), separators=(",", ":"), ensure_ascii=False)

    [message] = driver().parse_webhook(signed(original), original)
    assert isinstance(message, InboundMessage)
    assert message.text == "Café"
    with pytest.raises(WebhookSignatureError):
        driver().parse_webhook(signed(original), re_encoded.encode())


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature-256": ""},
        {"X-Hub-Signature-256": FIXTURE_SIGNATURE.removeprefix("sha256=")},
        {"X-Hub-Signature-256": "sha1=" + FIXTURE_SIGNATURE.removeprefix("sha256=")},
        {"X-Hub-Signature-256": "sha256=ünïcödé"},
        {"X-Hub-Signature": FIXTURE_SIGNATURE},
    ],
)
def test_a_missing_or_malformed_signature_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookSignatureError):
        driver().parse_webhook(headers, FIXTURE_BODY)


def test_the_signature_header_name_is_case_insensitive_and_hex_case_too() -> None:
    headers = {"X-HUB-SIGNATURE-256": FIXTURE_SIGNATURE.upper().replace("SHA256=", "sha256=")}

    assert len(driver().parse_webhook(headers, FIXTURE_BODY)) == 1


def test_a_body_over_four_mebibytes_is_refused_before_hashing() -> None:
    body = b" " * (WEBHOOK_MAX_BODY_BYTES + 1)

    with pytest.raises(WebhookTooLargeError):
        driver().parse_webhook(signed(body), body)


def test_a_signed_body_that_is_not_a_webhook_is_a_payload_error() -> None:
    for body in (b"not json", b"[1, 2]", b'{"entry": [{"changes": [{"field": "messages"}]}]} x'):
        with pytest.raises(WebhookPayloadError):
            driver().parse_webhook(signed(body), body)


def test_duplicates_and_out_of_order_statuses_are_all_reported_in_arrival_order() -> None:
    failed = status(
        "wamid.B",
        "failed",
        1764070009,
        errors=[{"code": 131026, "title": "Message undeliverable"}],
    )
    body = envelope(
        statuses=[
            status("wamid.A", "read", 1764070005),
            status("wamid.A", "delivered", 1764070003),
            status("wamid.A", "delivered", 1764070003),
            status("wamid.A", "sent", 1764070001),
            failed,
            status("wamid.C", "played", 1764070010),
        ]
    )

    reports = driver().parse_webhook(signed(body), body)

    assert [(r.provider_id, r.state) for r in reports if isinstance(r, DeliveryReport)] == [
        ("wamid.A", ReportState.READ),
        ("wamid.A", ReportState.DELIVRD),
        ("wamid.A", ReportState.DELIVRD),
        ("wamid.A", ReportState.SENT),
        ("wamid.B", ReportState.UNDELIV),
        ("wamid.C", ReportState.UNKNOWN),
    ]
    undeliverable = reports[4]
    assert isinstance(undeliverable, DeliveryReport)
    assert undeliverable.error_code == "131026"
    assert undeliverable.raw["error_title"] == "Message undeliverable"
    assert undeliverable.done_at == datetime.fromtimestamp(1764070009, UTC)


def test_button_replies_are_inbound_text_and_media_is_skipped() -> None:
    common = {"from": "919812345678", "timestamp": "1764070000"}
    body = envelope(
        messages=[
            {
                **common,
                "id": "wamid.1",
                "type": "button",
                "button": {"text": "Yes", "payload": "y"},
            },
            {**common, "id": "wamid.2", "type": "image", "image": {"id": "media-1"}},
            {
                **common,
                "id": "wamid.3",
                "type": "interactive",
                "interactive": {"type": "button_reply", "button_reply": {"id": "b", "title": "No"}},
            },
        ]
    )

    messages = driver().parse_webhook(signed(body), body)

    assert [m.text for m in messages if isinstance(m, InboundMessage)] == ["Yes", "No"]


def test_handshake_echoes_the_challenge_only_for_subscribe_with_our_token() -> None:
    wa = driver()

    assert wa.verify_handshake("subscribe", "verify-token", "12345") == "12345"
    assert wa.verify_handshake("subscribe", "verify-tokem", "12345") is None
    assert wa.verify_handshake("subscribe", "", "12345") is None
    assert wa.verify_handshake("unsubscribe", "verify-token", "12345") is None
    assert wa.verify_handshake("subscribe", None, "12345") is None
    assert wa.verify_handshake("subscribe", "vérify-token", "12345") is None
