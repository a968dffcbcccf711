"""Idempotency keys: one answer per key and request, whatever the number of retries."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from switchboard.errors import InvalidRequestError

MAX_KEY_LENGTH = 255


class KeyState(enum.StrEnum):
    IN_PROGRESS = "IN_PROGRESS"  # the first request holds the key under a lease
    COMPLETED = "COMPLETED"  # its answer is stored and replayed


@dataclass(frozen=True, slots=True, kw_only=True)
class IdempotencyRecord:
    account_id: str
    route: str
    key: str
    fingerprint: str
    owner: str  # the claim that holds or held the key; only it may complete or release it
    state: KeyState
    status_code: int | None
    content_type: str | None
    body: bytes | None
    created_at: datetime
    lease_until: datetime  # an IN_PROGRESS key whose lease lapsed (a crashed request) is free
    expires_at: datetime  # the key is forgotten after this

    def is_free(self, now: datetime) -> bool:
        """May a new request take the key over: forgotten, or left behind by a crash?"""
        if now >= self.expires_at:
            return True
        return self.state is KeyState.IN_PROGRESS and now >= self.lease_until


def parse_key(raw: str) -> str:
    """The header's value as given: 1–255 printable ASCII characters (Stripe's rule)."""
    if not raw or len(raw) > MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in raw):
        raise InvalidRequestError(
            f"Idempotency-Key must be 1–{MAX_KEY_LENGTH} printable ASCII characters"
        )
    return raw


def fingerprint(
    method: str, route: str, params: Mapping[str, str], files: Mapping[str, tuple[str, str]]
) -> str:
    """SHA-256 of what makes a request the same request: method, route, the merged parameters
    (names already lower-cased) and each file's name and content digest. Not the raw body: a
    multipart boundary differs on every retry."""
    canonical = json.dumps(
        [method, route, sorted(params.items()), sorted((k, list(v)) for k, v in files.items())],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
