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
class QueuedMessage:
    """The message an earlier record of a mid was queued as: what its send answered."""

    message_id: str
    verification_id: int | None  # None when the message itself has since been deleted
    transaction_id: str | None
    mobile_number: str | None  # national digits, as the send answers them


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlierRecord:
    """The record that already holds an (account, mid)."""

    ref: str
    created_at: datetime
    message: QueuedMessage | None  # None while its message is being queued


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

    async def remember(self, records: Sequence[SentRecord]) -> dict[str, EarlierRecord | None]:
        """Store, in one transaction and before their messages are queued, each record whose
        (account, mid) has no record yet. The answer maps the ref of every record not stored
        to the record that holds its mid (an earlier request's, a concurrent one's, or an earlier
        record of the same batch), or to None when that record was deleted meanwhile (its
        message was refused: the record may be tried again). Atomic: of concurrent records of
        one mid exactly one is stored. All records are the same account's."""
        ...

    async def earlier(self, account_id: str, mids: Sequence[str]) -> dict[str, EarlierRecord]:
        """The records that hold these mids now (a mid without one is left out)."""
        ...

    async def settle(self, queued: Sequence[tuple[str, str]]) -> None:
        """Record the message id of each (ref, message id) just queued."""
        ...

    async def recover(self, account_id: str, ref: str) -> EarlierRecord | None:
        """A record still without its message long after it was stored (the process that was
        queuing it died): the message that carries its ref, if one was queued, is recorded
        and the record answered; else the record is deleted (None), so the mid can be sent."""
        ...

    async def forget(self, refs: Sequence[str]) -> None:
        """Drop the records of messages that were refused (no message carries them)."""
        ...
