"""What the CleverTap integration keeps: each message's `mid`, and each customer's settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

# A CleverTap message's client_ref: this prefix and the `ref` of its SentRecord. The status
# listener tells CleverTap traffic apart by it without a query.
CLIENT_REF_PREFIX = "clevertap:"


@dataclass(frozen=True, slots=True, kw_only=True)
class SentRecord:
    """A record CleverTap sent, kept under `ref` before its message is queued."""

    ref: str
    account_id: str
    mid: str
    clevertap_account: str | None
    destination: str  # the recipient, digits without '+'
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CleverTapSettings:
    account_id: str
    callback_url: str | None = None  # where delivery reports go; None: none are recorded
    default_country_code: str | None = None  # for a $$To without a country code
    reply_numbers: tuple[str, ...] = ()  # own numbers (digits) whose replies go to CleverTap


class CleverTapStore(Protocol):
    async def get_settings(self, account_id: str) -> CleverTapSettings | None: ...

    async def save_settings(self, settings: CleverTapSettings, now: datetime) -> None:
        """Create or replace the customer's settings. Reports not yet delivered follow a new
        callback URL; without one they are dead-lettered (there is nowhere to send them).
        Raises DuplicateResourceError for a reply number another customer has."""
        ...

    async def remember(self, records: Sequence[SentRecord]) -> None:
        """Store records in one transaction, before their messages are queued."""
        ...

    async def forget(self, refs: Sequence[str]) -> None:
        """Drop the records of messages that were refused (no message carries them)."""
        ...
