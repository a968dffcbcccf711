"""What the API answers, as frozen values; `raw` keeps the whole `data` object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _str(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    return "" if value is None else str(value)


def _opt(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return None if value is None else str(value)


def _int(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    return int(value) if value not in (None, "") else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OtpSent:
    verification_id: str
    mobile_number: str
    timeout_s: int
    transaction_id: str
    sms_cli: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> OtpSent:
        return cls(
            verification_id=_str(data, "verificationId"),
            mobile_number=_str(data, "mobileNumber"),
            timeout_s=_int(data, "timeout"),
            transaction_id=_str(data, "transactionId"),
            sms_cli=_opt(data, "smsCLI"),
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OtpValidated:
    verification_id: str
    mobile_number: str
    verification_status: str
    transaction_id: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> OtpValidated:
        return cls(
            verification_id=_str(data, "verificationId"),
            mobile_number=_str(data, "mobileNumber"),
            verification_status=_str(data, "verificationStatus"),
            transaction_id=_str(data, "transactionId"),
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsSent:
    """One message accepted (MessageNow to one number or address)."""

    verification_id: str
    message_id: str
    transaction_id: str
    mobile_number: str | None
    encoding: str | None
    segments: int
    scheduled_at: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> SmsSent:
        return cls(
            verification_id=_str(data, "verificationId"),
            message_id=_str(data, "messageId"),
            transaction_id=_str(data, "transactionId"),
            mobile_number=_opt(data, "mobileNumber"),
            encoding=_opt(data, "encoding"),
            segments=_int(data, "segments"),
            scheduled_at=_opt(data, "scheduledAt"),
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignAccepted:
    """A list or an .xlsx accepted as a campaign; `errors` names the refused rows."""

    campaign_id: str
    verification_id: str
    transaction_id: str
    total: int
    accepted: int
    invalid: int
    errors: tuple[Mapping[str, Any], ...]
    scheduled_at: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> CampaignAccepted:
        return cls(
            campaign_id=_str(data, "campaignId"),
            verification_id=_str(data, "verificationId"),
            transaction_id=_str(data, "transactionId"),
            total=_int(data, "total"),
            accepted=_int(data, "accepted"),
            invalid=_int(data, "invalid"),
            errors=tuple(data.get("errors") or ()),
            scheduled_at=_opt(data, "scheduledAt"),
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Campaign:
    campaign_id: str
    status: str
    total: int
    invalid: int
    messages: int
    queued: int
    submitted: int
    delivered: int
    failed: int
    cancelled: int
    progress: float
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Campaign:
        counts = ("total", "invalid", "messages", "queued", "submitted", "delivered", "failed",
                  "cancelled")  # fmt: skip
        return cls(
            campaign_id=_str(data, "campaignId"),
            status=_str(data, "status"),
            progress=float(data.get("progress") or 0.0),
            raw=data,
            **{name: _int(data, name) for name in counts},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportRow:
    """One recipient of a campaign report."""

    message_id: str
    destination: str
    status: str
    delivery_status: str | None
    error_code: str | None
    segments: int
    submitted_at: str | None
    done_at: str | None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> ReportRow:
        return cls(
            message_id=_str(data, "messageId"),
            destination=_str(data, "destination"),
            status=_str(data, "status"),
            delivery_status=_opt(data, "deliveryStatus"),
            error_code=_opt(data, "errorCode"),
            segments=_int(data, "segments"),
            submitted_at=_opt(data, "submittedAt"),
            done_at=_opt(data, "doneAt"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackSettings:
    """The callback URL and events; `secret` only in the answer that created it."""

    callback_url: str | None
    events: tuple[str, ...]
    enabled: bool
    secret_id: str | None
    secret: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> CallbackSettings:
        return cls(
            callback_url=_opt(data, "callbackUrl"),
            events=tuple(data.get("events") or ()),
            enabled=bool(data.get("enabled")),
            secret_id=_opt(data, "secretId"),
            secret=_opt(data, "secret"),
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageInfo:
    """A message's status (`status` ours, `delivery_status` the report's name) and history."""

    message_id: str
    status: str
    delivery_status: str | None
    channel: str
    destination: str
    error_code: str | None
    campaign_id: str | None
    verification_id: str | None
    history: tuple[Mapping[str, Any], ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> MessageInfo:
        return cls(
            message_id=_str(data, "messageId"),
            status=_str(data, "status"),
            delivery_status=_opt(data, "deliveryStatus"),
            channel=_str(data, "channel"),
            destination=_str(data, "destination"),
            error_code=_opt(data, "errorCode"),
            campaign_id=_opt(data, "campaignId"),
            verification_id=_opt(data, "verificationId"),
            history=tuple(data.get("history") or ()),
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationInfo:
    verification_id: str
    status: str
    channel: str
    attempts: int
    max_attempts: int
    created_at: str
    expires_at: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> VerificationInfo:
        return cls(
            verification_id=_str(data, "verificationId"),
            status=_str(data, "status"),
            channel=_str(data, "channel"),
            attempts=_int(data, "attempts"),
            max_attempts=_int(data, "maxAttempts"),
            created_at=_str(data, "createdAt"),
            expires_at=_str(data, "expiresAt"),
            raw=data,
        )
