"""Automations and their jobs as values: the built-in kinds, their defaults, and quiet hours."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from switchboard.automations import events
from switchboard.domain import schedule
from switchboard.domain.messages import Channel, MessageType


class AutomationKind(StrEnum):
    ORDER_CONFIRMATION = "order_confirmation"
    SHIPPING_UPDATE = "shipping_update"
    ABANDONED_CHECKOUT = "abandoned_checkout"
    REVIEW_REQUEST = "review_request"
    WELCOME = "welcome"
    CUSTOM = "custom"


class JobStatus(StrEnum):
    PENDING = "PENDING"  # waiting for due_at (or leased by a runner right now)
    SENT = "SENT"  # its message was queued, in the same transaction as this status
    CANCELLED = "CANCELLED"  # the condition cleared (checkout completed, subject cleared, …)
    SKIPPED = "SKIPPED"  # never to be sent: no consent, no address
    FAILED = "FAILED"  # the message was refused (bad sender, funds, …) or attempts ran out


@dataclass(frozen=True, slots=True, kw_only=True)
class KindDefaults:
    event_name: str
    message_type: MessageType
    delay: timedelta
    quiet_hours: str | None
    template: str


# A new shop works at once with these; every one can be changed per automation. Marketing-like
# messages are PROMOTIONAL (consent required) and wait out the night.
DEFAULTS: Final[Mapping[AutomationKind, KindDefaults]] = {
    AutomationKind.ORDER_CONFIRMATION: KindDefaults(
        event_name=events.ORDER_CREATED,
        message_type=MessageType.TRANSACTIONAL,
        delay=timedelta(0),
        quiet_hours=None,
        template="Hi {{customer.first_name}}, thanks for your order {{order.name}}! "
        "We will text you when it ships.",
    ),
    AutomationKind.SHIPPING_UPDATE: KindDefaults(
        event_name=events.SHIPMENT_UPDATED,
        message_type=MessageType.TRANSACTIONAL,
        delay=timedelta(0),
        quiet_hours=None,
        template="Good news {{customer.first_name}}: order {{order.name}} is on its way. "
        "Track it: {{tracking_url}}",
    ),
    AutomationKind.ABANDONED_CHECKOUT: KindDefaults(
        event_name=events.CHECKOUT_STARTED,
        message_type=MessageType.PROMOTIONAL,
        delay=timedelta(minutes=60),
        quiet_hours="21:00-09:00",
        template="Hi {{customer.first_name}}, you left something in your cart. "
        "Complete your order: {{checkout_url}}",
    ),
    AutomationKind.REVIEW_REQUEST: KindDefaults(
        event_name=events.ORDER_FULFILLED,
        message_type=MessageType.PROMOTIONAL,
        delay=timedelta(days=7),
        quiet_hours="21:00-09:00",
        template="Hi {{customer.first_name}}, how do you like your order {{order.name}}? "
        "Tell us: {{review_url}}",
    ),
    AutomationKind.WELCOME: KindDefaults(
        event_name=events.CUSTOMER_CREATED,
        message_type=MessageType.PROMOTIONAL,
        delay=timedelta(0),
        quiet_hours="21:00-09:00",
        template="Welcome {{customer.first_name}}! Thanks for joining us.",
    ),
}

# Events that settle a subject an abandoned-checkout job waits on: the reminder is then moot.
CHECKOUT_CLOSERS: Final = frozenset({events.CHECKOUT_COMPLETED, events.ORDER_CREATED})
# The marker `clear_subject` records, so a job made later for that subject is cancelled too.
SUBJECT_CLEARED: Final = "subject.cleared"

MAX_DELAY: Final = timedelta(days=60)
MAX_TEMPLATE_CHARS: Final = 1600
_QUIET_HOURS = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")


def check_quiet_hours(value: str | None) -> str | None:
    """`"HH:MM-HH:MM"` (local time, may wrap midnight) or None; ValueError otherwise."""
    if value is None:
        return None
    if not _QUIET_HOURS.fullmatch(value):
        raise ValueError("quiet hours are HH:MM-HH:MM, e.g. 21:00-09:00")
    start, end = value.split("-")
    if start == end:
        raise ValueError("quiet hours must not start and end at the same minute")
    return value


def after_quiet_hours(moment: datetime, quiet_hours: str | None, timezone: str) -> datetime:
    """`moment`, or the end of the quiet window it falls in (local time of `timezone`)."""
    if quiet_hours is None:
        return moment
    start, end = quiet_hours.split("-")
    return schedule.next_allowed(moment, f"{end}-{start}", timezone)


@dataclass(frozen=True, slots=True, kw_only=True)
class Automation:
    """One rule of an account: on `event_name` (from `source`, or any when None), send."""

    id: str
    account_id: str
    kind: AutomationKind
    event_name: str
    name: str
    enabled: bool
    source: str | None
    template: str
    sender_id: str | None
    message_type: MessageType
    channel: Channel
    delay: timedelta
    quiet_hours: str | None
    created_at: datetime
    updated_at: datetime

    def listens_to(self, event: events.Event) -> bool:
        return (
            self.enabled
            and self.event_name == event.name
            and (self.source is None or self.source == event.source)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    """What is kept of a published event: enough to dedupe, re-check and erase, no fields."""

    id: str
    account_id: str
    source: str
    key: str
    name: str
    subject: str | None
    phone: str | None
    email: str | None
    occurred_at: datetime
    recorded_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One send an automation owes for one event, due at `due_at`; durable in the database."""

    id: str
    account_id: str
    automation_id: str
    kind: AutomationKind
    event_id: str
    event_name: str
    subject: str | None
    phone: str | None
    email: str | None
    timezone: str
    context: Mapping[str, Any] = field(default_factory=dict)  # what the template reads
    status: JobStatus
    due_at: datetime
    reason: str | None = None
    message_id: str | None = None
    attempts: int = 0
    created_at: datetime
    updated_at: datetime
