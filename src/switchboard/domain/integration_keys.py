"""Integration keys: long random secrets a customer gives a third party, stored only as keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

# Recognisable in a pasted credential (and by secret scanners): `sbk_` + 43 url-safe characters.
KEY_PREFIX = "sbk_"
_KEY_BYTES = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class IntegrationKey:
    id: str
    account_id: str
    name: str
    hint: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def new_key_id() -> str:
    return "ik_" + secrets.token_hex(8)


def looks_like_key(value: str | None) -> bool:
    return bool(value) and value is not None and value.startswith(KEY_PREFIX)


def key_digest(pepper: bytes, key: str) -> str:
    """HMAC-SHA256 under the server pepper: a stolen table cannot be checked offline."""
    return hmac.new(pepper, b"integration-key:" + key.encode(), hashlib.sha256).hexdigest()


def key_hint(key: str) -> str:
    return "…" + key[-4:]
