"""Webhook signing secrets: generation, a display fingerprint, Standard Webhooks signatures."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import math
import secrets
from collections.abc import Sequence
from datetime import datetime

from switchboard.domain.callbacks import check_webhook_id

SECRET_PREFIX = "whsec_"  # noqa: S105 - the public prefix, not a secret
SECRET_BYTES = 32
# Standard Webhooks allows 24-64 random bytes; anything outside is not one of ours.
_KEY_BYTES = range(24, 65)


def generate_secret() -> str:
    """A new per-endpoint secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


@functools.lru_cache(maxsize=1024)
def decode_secret(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret; ValueError if it is not a well-formed one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is base64 after its prefix") from None
    if len(key) not in _KEY_BYTES:
        raise ValueError("a webhook secret holds 24 to 64 bytes")
    return key


def secret_id(secret: str) -> str:
    """A short, non-secret fingerprint to show which secret is which: `wsid_` + 12 hex digits."""
    digest = hashlib.sha256(b"switchboard webhook secret id\x00" + decode_secret(secret))
    return "wsid_" + digest.hexdigest()[:12]


def signature_header(
    signing_secrets: Sequence[str], webhook_id: str, timestamp_s: int, body: bytes
) -> str:
    """The `webhook-signature` value: one `v1,<base64>` per secret, space-separated.

    Several secrets sign during a rotation, so a receiver holding either one verifies. The
    signed content is `id.timestamp.body` (Standard Webhooks v1; the reference library is the
    tests' oracle).
    """
    if not signing_secrets:
        raise ValueError("at least one secret is needed to sign")
    check_webhook_id(webhook_id)
    content = b"%s.%d.%s" % (webhook_id.encode("ascii"), timestamp_s, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(decode_secret(secret), content, "sha256")).decode()
        for secret in signing_secrets
    )


def timestamp_seconds(moment: datetime) -> int:
    """Unix seconds for `webhook-timestamp`, rounded down like the reference library."""
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return math.floor(moment.timestamp())
