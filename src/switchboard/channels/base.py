"""The ChannelDriver contract, what a send returns, and how reports flow back.

A driver turns an OutboundMessage into provider traffic. It never touches storage: delivery
reports and inbound messages go to the ReportSink it was started with, and the sink returns only
once the report is stored, so a driver may acknowledge the provider (deliver_sm_resp, HTTP 200)
afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from switchboard.domain.messages import Channel, MessageType


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundMessage:
    id: str
    account_id: str
    channel: Channel
    message_type: MessageType
    destination: str  # E.164 with '+', or an e-mail address for EMAIL
    sender: str | None
    text: str
    html: str | None = None  # e-mail only
    subject: str | None = None  # e-mail only
    otp_code: str | None = None  # only for OTPs: channels that template the code (WhatsApp)
    expires_at: datetime | None = None  # OTP validity: never deliver after it
    dlt_entity_id: str | None = None
    dlt_template_id: str | None = None
    attempt: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """Provider ids of the submitted parts, in order (one for a single-part message)."""

    provider_ids: tuple[str, ...]
    segments: int = 1


class SendErrorKind(StrEnum):
    TRANSIENT = "TRANSIENT"  # nothing was sent; retry later (throttled, link down, 5xx)
    PERMANENT = "PERMANENT"  # the provider refused it; a fallback channel may be tried
    AMBIGUOUS = "AMBIGUOUS"  # it may have been sent (response timeout): never resend an OTP


class SendError(Exception):
    def __init__(
        self,
        kind: SendErrorKind,
        reason: str,
        *,
        provider_code: str | None = None,
        retry_after_s: float | None = None,
        partial_ids: tuple[str, ...] = (),
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.provider_code = provider_code
        self.retry_after_s = retry_after_s
        self.partial_ids = partial_ids


class ReportState(StrEnum):
    """Provider states normalised; the final five are the Message Central statuses."""

    ENROUTE = "ENROUTE"
    ACCEPTD = "ACCEPTD"
    SENT = "SENT"  # handed on by the provider (WhatsApp "sent")
    READ = "READ"  # after DELIVRD (WhatsApp, RCS); kept as history only
    DELIVRD = "DELIVRD"
    EXPIRED = "EXPIRED"
    UNDELIV = "UNDELIV"
    UNKNOWN = "UNKNOWN"
    REJECTD = "REJECTD"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReport:
    connector: str
    provider_id: str
    state: ReportState
    error_code: str | None = None
    submitted_at: datetime | None = None
    done_at: datetime | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage:
    connector: str
    channel: Channel
    source: str
    destination: str
    text: str
    received_at: datetime


class ReportSink(Protocol):
    async def on_report(self, report: DeliveryReport) -> None:
        """Store a delivery report; returns once it is durable. Must not raise for unknown ids."""
        ...

    async def on_inbound(self, message: InboundMessage) -> None:
        """Store an inbound (MO) message; returns once it is durable."""
        ...


class ChannelDriver(Protocol):
    name: str
    channels: frozenset[Channel]

    async def start(self, sink: ReportSink) -> None:
        """Connect (bind, authenticate); returns quickly, connecting in the background."""
        ...

    async def close(self) -> None:
        """Stop taking sends, finish in-flight ones within a grace period, disconnect."""
        ...

    def is_available(self) -> bool:
        """False while the driver cannot send (unbound, auth failed); routing skips it."""
        ...

    async def send(self, message: OutboundMessage) -> SendResult:
        """Submit one message (all its parts). Raises SendError; never returns partial success."""
        ...


@runtime_checkable
class RevocableDriver(Protocol):
    """A driver that can withdraw a message not yet delivered (Google RBM), so that a fallback
    SMS is not the user's second copy."""

    async def revoke(self, message: OutboundMessage) -> bool:
        """True: withdrawn before delivery. False: already delivered or unknown to the
        provider. Raises SendError when the provider could not be asked."""
        ...


def connector_views(drivers: Mapping[str, ChannelDriver]) -> list[dict[str, Any]]:
    """Each connector's channels, availability and, where the driver has one, its status
    (for /status, the metrics and the console)."""
    views = []
    for name, driver in drivers.items():
        view: dict[str, Any] = {
            "name": name,
            "channels": sorted(c.value for c in driver.channels),
            "available": driver.is_available(),
        }
        status = getattr(driver, "status", None)
        if callable(status):
            view["detail"] = dataclasses.asdict(status())
        views.append(view)
    return views
