"""Inbound provider webhooks: the errors their parsers raise and the checks they share.

    WebhookError                 a webhook the route must refuse
    ├── WebhookSignatureError    missing, malformed or wrong signature → 401 without detail (WI-1)
    ├── WebhookTooLargeError     body over the provider's cap → 413 (WI-8)
    └── WebhookPayloadError      correctly signed but not the documented shape → 400

Parsers verify the signature over the bytes exactly as received, before trusting any field.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping


class WebhookError(Exception):
    pass


class WebhookSignatureError(WebhookError):
    pass


class WebhookTooLargeError(WebhookError):
    pass


class WebhookPayloadError(WebhookError):
    pass


def find_header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name`, matched case-insensitively (a plain dict keeps any case)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def require_size_within(raw_body: bytes, limit_bytes: int) -> None:
    if len(raw_body) > limit_bytes:
        raise WebhookTooLargeError(f"body of {len(raw_body)} bytes exceeds {limit_bytes}")


def equal_in_constant_time(received: str, expected: str) -> bool:
    """Constant-time comparison, over bytes so that a non-ASCII header fails instead of raising."""
    return hmac.compare_digest(received.encode(), expected.encode())
