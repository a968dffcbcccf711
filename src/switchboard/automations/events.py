"""Events: what a CRM (Shopify, or any caller of POST /api/v1/events) tells the automation engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# Event names the built-in automations listen to; any other name can drive a custom rule.
ORDER_CREATED = "order.created"
ORDER_FULFILLED = "order.fulfilled"
SHIPMENT_UPDATED = "shipment.updated"  # carries tracking_url / tracking_number
CHECKOUT_STARTED = "checkout.started"  # checkout created or updated, not completed
CHECKOUT_COMPLETED = "checkout.completed"
CUSTOMER_CREATED = "customer.created"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One business event for one customer account.

    `key` makes publishing idempotent: the same (account, source, key) twice acts once (a
    retried webhook). `subject` groups events about one thing (`checkout:<token>`); a delayed
    job waits on its subject and is cancelled when `clear_subject` is called for it.
    `consent` is the recipient's marketing consent (None: unknown), honoured by promotional
    automations. `fields` feed the templates (`{{order.name}}`, `{{customer.first_name}}`).
    """

    account_id: str
    name: str
    key: str
    source: str  # "api", or e.g. "shopify:acme.myshopify.com"
    occurred_at: datetime
    phone: str | None = None  # E.164
    email: str | None = None
    subject: str | None = None
    consent: bool | None = None
    timezone: str | None = None  # IANA name for quiet hours (the shop's); None: the account's
    fields: Mapping[str, Any] = field(default_factory=dict)


class EventSink(Protocol):
    async def publish(self, event: Event) -> list[str]:
        """Run the account's automations for the event: immediate sends are queued, delayed
        ones stored as durable jobs. Returns the ids of the jobs and messages it made; the
        same (account, source, key) again returns [] and does nothing."""
        ...

    async def clear_subject(self, account_id: str, subject: str) -> int:
        """Cancel the pending delayed jobs waiting on `subject` (e.g. the checkout was
        completed); returns how many were cancelled."""
        ...

    async def forget_recipient(
        self, account_id: str, *, phone: str | None, email: str | None
    ) -> int:
        """Erase stored events and pending jobs about a person (GDPR redact)."""
        ...
