"""Outbound messages: channels, message types, statuses and the transitions between them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

from switchboard.errors import InvalidRequestError


class Channel(StrEnum):
    SMS = "SMS"
    WHATSAPP = "WHATSAPP"
    RCS = "RCS"
    EMAIL = "EMAIL"


def parse_flow_type(raw: str | None) -> Channel:
    """The spec's `flowType`: SMS, WHATSAPP, RCS or EMAIL; SAUTH is refused until it exists."""
    value = (raw or "").strip().upper()
    if not value:
        raise InvalidRequestError("flowType is required (SMS, WHATSAPP, RCS or EMAIL)")
    if value == "SAUTH":
        raise InvalidRequestError("flowType SAUTH (silent authentication) is not enabled")
    try:
        return Channel(value)
    except ValueError:
        raise InvalidRequestError(
            f"flowType '{raw}' is not one of SMS, WHATSAPP, RCS, EMAIL"
        ) from None


class MessageType(StrEnum):
    OTP = "OTP"
    TRANSACTIONAL = "TRANSACTIONAL"
    PROMOTIONAL = "PROMOTIONAL"

    @classmethod
    def parse(cls, raw: str | None) -> MessageType:
        """The spec's spellings: OTP (default), TRANSACTION or TRANSACTIONAL, PROMOTIONAL."""
        value = (raw or "OTP").strip().upper()
        if value == "TRANSACTION":
            return cls.TRANSACTIONAL
        return cls(value)


class Lane(IntEnum):
    """Queue priority: a lower value is claimed first, so OTPs never wait behind campaigns."""

    OTP = 0
    TRANSACTIONAL = 1
    PROMOTIONAL = 2

    @classmethod
    def for_type(cls, message_type: MessageType) -> Lane:
        return cls[message_type.value]


class MessageStatus(StrEnum):
    HELD = "HELD"  # a fallback step waiting for its turn
    QUEUED = "QUEUED"
    SENDING = "SENDING"  # leased by a worker
    SUBMITTED = "SUBMITTED"
    DELIVERED = "DELIVERED"
    UNDELIVERABLE = "UNDELIVERABLE"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"
    FAILED = "FAILED"  # no route, permanent submit error, retries exhausted
    CANCELLED = "CANCELLED"  # e.g. an OTP whose verification ended before it was sent

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    @property
    def report_name(self) -> str | None:
        """The Message Central callback status (DELIVRD …), for statuses customers are told of."""
        return _REPORT_NAMES.get(self)


FINAL_STATUSES = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERABLE,
        MessageStatus.EXPIRED,
        MessageStatus.REJECTED,
        MessageStatus.FAILED,
        MessageStatus.CANCELLED,
    }
)

_REPORT_NAMES = {
    MessageStatus.DELIVERED: "DELIVRD",
    MessageStatus.UNDELIVERABLE: "UNDELIV",
    MessageStatus.EXPIRED: "EXPIRED",
    MessageStatus.REJECTED: "REJECTD",
    MessageStatus.UNKNOWN: "UNKNOWN",
    MessageStatus.FAILED: "UNDELIV",
}

# UNKNOWN is not final: a later receipt may still settle it.
_ALLOWED: dict[MessageStatus, frozenset[MessageStatus]] = {
    MessageStatus.HELD: frozenset({MessageStatus.QUEUED, MessageStatus.CANCELLED}),
    MessageStatus.QUEUED: frozenset(
        {MessageStatus.SENDING, MessageStatus.CANCELLED, MessageStatus.FAILED}
    ),
    MessageStatus.SENDING: frozenset(
        {
            MessageStatus.QUEUED,
            MessageStatus.SUBMITTED,
            MessageStatus.UNKNOWN,
            MessageStatus.FAILED,
            MessageStatus.CANCELLED,
            MessageStatus.REJECTED,
        }
    ),
    MessageStatus.SUBMITTED: frozenset(FINAL_STATUSES | {MessageStatus.UNKNOWN}),
    MessageStatus.UNKNOWN: frozenset(FINAL_STATUSES),
}


def can_transition(current: MessageStatus, new: MessageStatus) -> bool:
    """Whether a message may move from `current` to `new`; a final status never changes."""
    return new in _ALLOWED.get(current, frozenset())


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRecord:
    """One outbound message as stored; also the queue entry that workers claim."""

    id: str
    numeric_id: int
    transaction_id: str
    account_id: str
    channel: Channel
    message_type: MessageType
    status: MessageStatus
    destination: str
    country_code: str
    sender: str | None
    body: str
    created_at: datetime
    otp_code: str | None = None
    subject: str | None = None
    html: str | None = None
    encoding: str | None = None
    segments: int = 1
    verification_id: int | None = None
    step: int = 0
    campaign_id: str | None = None
    dlt_entity_id: str | None = None
    dlt_template_id: str | None = None
    client_ref: str | None = None
    not_before: datetime | None = None
    expires_at: datetime | None = None
    connector: str | None = None
    error_code: str | None = None
    error_reason: str | None = None
    attempts: int = 0
    submitted_at: datetime | None = None
    done_at: datetime | None = None
    charge: int | None = None  # minor units charged at acceptance (billing on), else None
    charge_state: str | None = None  # domain.wallet.ChargeState

    @property
    def lane(self) -> Lane:
        """The queue lane. OTP-typed campaigns (the spec's default messageType) are billed as
        OTP but queued as transactional: the OTP lane is for single, time-critical codes, and a
        campaign in it would hold back every OTP sent after it."""
        lane = Lane.for_type(self.message_type)
        if lane is Lane.OTP and self.campaign_id is not None:
            return Lane.TRANSACTIONAL
        return lane


def redact_code(text: str, code: str | None) -> str:
    """The stored copy of a sent OTP: the code replaced, the rest kept for support."""
    if not code:
        return text
    return text.replace(code, "*" * len(code))
