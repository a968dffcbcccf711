"""The spec's delivery callback body and the verification event bodies, byte for byte."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from switchboard.domain.callbacks import (
    VerificationEvent,
    VerificationEventType,
    delivery_payload,
    encode_payload,
    verification_event_payload,
)

SUBMITTED = datetime(2023, 11, 2, 13, 59, 18, 250_000, tzinfo=UTC)
DONE = datetime(2023, 11, 2, 13, 59, 22, tzinfo=UTC)


def test_delivery_payload_matches_the_spec_example_key_for_key() -> None:
    payload = delivery_payload(
        message_id="a2e87214-d18c-4a2e-b7f4-802c4465a9b9",
        status="DELIVRD",
        country_code="91",
        national_number="9999999999",
        submitted_at=SUBMITTED,
        done_at=DONE,
    )

    assert payload == {
        "apiKey": None,
        "clientId": None,
        "messageId": "a2e87214-d18c-4a2e-b7f4-802c4465a9b9",
        "status": "DELIVRD",
        "errorCode": 0,
        "countryCode": None,
        "mobile": "919999999999",
        "submitDate": "2023-11-02 13:59:18",
        "doneDate": "2023-11-02 13:59:22",
    }
    assert list(payload) == [
        "apiKey",
        "clientId",
        "messageId",
        "status",
        "errorCode",
        "countryCode",
        "mobile",
        "submitDate",
        "doneDate",
    ]


def test_encoded_delivery_body_is_minified_json_in_spec_order() -> None:
    body = encode_payload(
        delivery_payload(
            message_id="m-1",
            status="UNDELIV",
            country_code="+1",
            national_number="4155550100",
            submitted_at=SUBMITTED,
            done_at=DONE,
            error_code=34,
        )
    )

    assert body == (
        b'{"apiKey":null,"clientId":null,"messageId":"m-1","status":"UNDELIV","errorCode":34,'
        b'"countryCode":null,"mobile":"14155550100","submitDate":"2023-11-02 13:59:18",'
        b'"doneDate":"2023-11-02 13:59:22"}'
    )


def test_callback_dates_are_written_in_utc() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    payload = delivery_payload(
        message_id="m",
        status="DELIVRD",
        country_code="91",
        national_number="9999999999",
        submitted_at=datetime(2023, 11, 2, 19, 29, 18, tzinfo=india),
        done_at=None,
    )

    assert payload["submitDate"] == "2023-11-02 13:59:18"
    assert payload["doneDate"] is None


@pytest.mark.parametrize("status", ["DELIVRD", "EXPIRED", "UNDELIV", "UNKNOWN", "REJECTD"])
def test_every_spec_status_is_accepted(status: str) -> None:
    payload = delivery_payload(
        message_id="m",
        status=status,
        country_code="44",
        national_number="7700900123",
        submitted_at=SUBMITTED,
        done_at=DONE,
    )

    assert payload["status"] == status


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "DELIVERED"),
        ("country_code", "0"),
        ("country_code", "1234"),
        ("national_number", "+9999999999"),
        ("national_number", "99 99"),
        ("national_number", ""),
        ("submitted_at", datetime(2023, 11, 2, 13, 59, 18)),  # noqa: DTZ001 - naive on purpose
    ],
)
def test_malformed_delivery_values_are_rejected(field: str, value: object) -> None:
    arguments: dict[str, object] = {
        "message_id": "m",
        "status": "DELIVRD",
        "country_code": "91",
        "national_number": "9999999999",
        "submitted_at": SUBMITTED,
        "done_at": DONE,
    }
    arguments[field] = value

    with pytest.raises(ValueError, match=r"."):
        delivery_payload(**arguments)  # type: ignore[arg-type]


def _event(event_type: VerificationEventType, next_channel: str | None = None) -> VerificationEvent:
    return VerificationEvent(
        event_id="evt_01J9Z",
        type=event_type,
        occurred_at=datetime(2026, 11, 25, 12, 0, 0, 123_456, tzinfo=UTC),
        sequence=3,
        verification_id="1234567",
        customer_id="C-1",
        country_code="91",
        national_number="9999999999",
        channel="SMS",
        next_channel=next_channel,
    )


@pytest.mark.parametrize(
    "event_type",
    [VerificationEventType.VERIFIED, VerificationEventType.EXPIRED, VerificationEventType.FAILED],
)
def test_verification_event_payload_has_id_type_timestamp_sequence_and_data(
    event_type: VerificationEventType,
) -> None:
    payload = verification_event_payload(_event(event_type))

    assert payload == {
        "id": "evt_01J9Z",
        "type": event_type.value,
        "timestamp": "2026-11-25T12:00:00.123Z",
        "sequence": 3,
        "data": {
            "verificationId": "1234567",
            "customerId": "C-1",
            "mobile": "919999999999",
            "flowType": "SMS",
        },
    }


def test_fallback_event_names_the_next_channel() -> None:
    payload = verification_event_payload(_event(VerificationEventType.FALLBACK, "WHATSAPP"))

    assert payload["type"] == "verification.fallback"
    assert payload["data"] == {
        "verificationId": "1234567",
        "customerId": "C-1",
        "mobile": "919999999999",
        "flowType": "SMS",
        "nextFlowType": "WHATSAPP",
    }


@pytest.mark.parametrize("event_type", list(VerificationEventType))
def test_verification_events_never_carry_a_code(event_type: VerificationEventType) -> None:
    next_channel = "EMAIL" if event_type is VerificationEventType.FALLBACK else None
    body = encode_payload(verification_event_payload(_event(event_type, next_channel)))

    text = json.dumps(json.loads(body)).lower()
    assert "code" not in text.replace("countrycode", "")
    assert "otp" not in text


def test_fallback_without_next_channel_is_rejected() -> None:
    with pytest.raises(ValueError, match="next_channel"):
        _event(VerificationEventType.FALLBACK)


def test_event_id_with_a_dot_is_rejected_because_it_is_signed_as_the_webhook_id() -> None:
    with pytest.raises(ValueError, match="webhook id"):
        VerificationEvent(
            event_id="evt.1",
            type=VerificationEventType.VERIFIED,
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
            sequence=0,
            verification_id="1",
            customer_id="C",
            country_code="91",
            national_number="9999999999",
            channel="SMS",
        )
