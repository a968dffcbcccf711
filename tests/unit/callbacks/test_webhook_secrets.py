"""Signing secrets and signatures, checked against the reference `standardwebhooks` library."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from switchboard.callbacks.secrets import (
    decode_secret,
    generate_secret,
    secret_id,
    signature_header,
    timestamp_seconds,
)

BODY = b'{"apiKey":null,"messageId":"m-1","status":"DELIVRD"}'


def _headers(webhook_id: str, timestamp_s: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature,
    }


def test_generated_secret_is_whsec_and_32_random_bytes() -> None:
    secret = generate_secret()

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert decode_secret(secret) == base64.b64decode(secret.removeprefix("whsec_"))
    assert len({generate_secret() for _ in range(50)}) == 50


def test_secret_id_is_a_short_stable_fingerprint_that_reveals_nothing() -> None:
    secret = generate_secret()

    fingerprint = secret_id(secret)

    assert fingerprint == secret_id(secret)
    assert fingerprint != secret_id(generate_secret())
    assert fingerprint.startswith("wsid_")
    assert len(fingerprint) == len("wsid_") + 12
    assert fingerprint.removeprefix("wsid_") not in secret


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "abc",
        "whsec_",
        "whsec_not*base64",
        "whsec_" + base64.b64encode(b"x" * 23).decode(),
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
        base64.b64encode(b"x" * 32).decode(),
    ],
)
def test_malformed_secrets_are_rejected(secret: str) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        decode_secret(secret)


def test_signature_verifies_with_the_reference_library_and_fails_after_a_one_byte_change() -> None:
    secret = generate_secret()
    now = timestamp_seconds(datetime.now(UTC))
    headers = _headers("msg_1", now, signature_header([secret], "msg_1", now, BODY))

    assert Webhook(secret).verify(BODY, headers)["status"] == "DELIVRD"
    tampered = BODY.replace(b"DELIVRD", b"DELIVRE")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers)


def test_rotation_signature_lists_both_and_either_secret_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    now = timestamp_seconds(datetime.now(UTC))

    signature = signature_header([old, new], "msg_2", now, BODY)
    headers = _headers("msg_2", now, signature)

    assert len(signature.split(" ")) == 2
    assert all(part.startswith("v1,") for part in signature.split(" "))
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_signature_matches_the_reference_library_exactly() -> None:
    secret = generate_secret()
    moment = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

    ours = signature_header([secret], "msg_3", timestamp_seconds(moment), BODY)

    assert ours == Webhook(secret).sign("msg_3", moment, BODY.decode())


def test_timestamp_of_a_non_utc_datetime_is_the_true_unix_time() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    moment = datetime(2026, 11, 25, 17, 30, 0, 900_000, tzinfo=india)

    assert timestamp_seconds(moment) == int(datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp())
    assert abs(timestamp_seconds(datetime.now(UTC)) - time.time()) < 2


@pytest.mark.parametrize("webhook_id", ["", "msg.1", "msg 1", "msg\r\nx-evil: 1", "é", "m" * 129])
def test_webhook_id_must_be_a_short_header_safe_token_without_dots(webhook_id: str) -> None:
    with pytest.raises(ValueError, match="webhook id"):
        signature_header([generate_secret()], webhook_id, 1_700_000_000, BODY)


def test_signing_needs_at_least_one_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signature_header([], "msg_4", 1_700_000_000, BODY)
