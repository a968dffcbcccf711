"""Webhook topics → automation events: which event, for whom, with which fields (pure mapping)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import phonenumbers

from switchboard.automations import events as names
from switchboard.automations.events import Event

ORDERS_CREATE = "orders/create"
ORDERS_FULFILLED = "orders/fulfilled"
FULFILLMENTS_CREATE = "fulfillments/create"
FULFILLMENTS_UPDATE = "fulfillments/update"
CHECKOUTS_CREATE = "checkouts/create"
CHECKOUTS_UPDATE = "checkouts/update"
CUSTOMERS_CREATE = "customers/create"
APP_UNINSTALLED = "app/uninstalled"
CUSTOMERS_DATA_REQUEST = "customers/data_request"
CUSTOMERS_REDACT = "customers/redact"
SHOP_REDACT = "shop/redact"

EVENT_TOPICS = (
    ORDERS_CREATE, ORDERS_FULFILLED, FULFILLMENTS_CREATE, FULFILLMENTS_UPDATE,
    CHECKOUTS_CREATE, CHECKOUTS_UPDATE, CUSTOMERS_CREATE,
)  # fmt: skip
COMPLIANCE_TOPICS = (CUSTOMERS_DATA_REQUEST, CUSTOMERS_REDACT, SHOP_REDACT)

_CONSENT = {"subscribed": True, "not_subscribed": False, "unsubscribed": False, "redacted": False}


@dataclass(frozen=True, slots=True, kw_only=True)
class ShopContext:
    account_id: str
    shop: str
    name: str | None
    timezone: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Actions:
    """What one webhook asks of the engine: subjects to clear first, then events to publish.
    `customer_id` and the events' destinations are remembered for the redact topics."""

    clear_subjects: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    customer_id: str | None = None
    destinations: tuple[str, ...] = field(default=())


def mapping_of(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def text_of(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def normalise_phone(raw: Any, region: str | None = None) -> str | None:
    """E.164 of a Shopify phone field ('+16135551111', or national digits with the address's
    country); None when it is not a valid number."""
    text = text_of(raw)
    if text is None:
        return None
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else (region or None))
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def find_phone(payload: Mapping[str, Any]) -> str | None:
    """The first valid of `phone`, `customer.phone`, `billing_address.phone`,
    `shipping_address.phone` (and a fulfillment's `destination.phone`)."""
    customer = mapping_of(payload.get("customer"))
    candidates: list[tuple[Any, Mapping[str, Any]]] = [
        (payload.get("phone"), mapping_of(payload.get("billing_address"))),
        (customer.get("phone"), mapping_of(customer.get("default_address"))),
    ]
    for name in ("billing_address", "shipping_address", "destination", "default_address"):
        address = mapping_of(payload.get(name))
        candidates.append((address.get("phone"), address))
    for raw, address in candidates:
        phone = normalise_phone(raw, text_of(address.get("country_code")))
        if phone is not None:
            return phone
    return None


def find_consent(payload: Mapping[str, Any]) -> bool | None:
    """`customer.sms_marketing_consent.state` (a customers/* payload carries it at the top)."""
    customer = mapping_of(payload.get("customer")) or payload
    state = text_of(mapping_of(customer.get("sms_marketing_consent")).get("state"))
    return None if state is None else _CONSENT.get(state.lower())


def _email(payload: Mapping[str, Any]) -> str | None:
    return text_of(payload.get("email")) or text_of(
        mapping_of(payload.get("customer")).get("email")
    )


def _when(value: Any, fallback: datetime) -> datetime:
    text = text_of(value)
    if text is None:
        return fallback
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return fallback
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _customer_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    customer = mapping_of(payload.get("customer")) or payload
    address = mapping_of(payload.get("shipping_address")) or mapping_of(
        payload.get("billing_address")
    )
    return {
        "id": text_of(customer.get("id")),
        "first_name": text_of(customer.get("first_name")) or text_of(address.get("first_name")),
        "last_name": text_of(customer.get("last_name")) or text_of(address.get("last_name")),
    }


def _tracking(fulfillment: Mapping[str, Any]) -> dict[str, Any]:
    urls = fulfillment.get("tracking_urls")
    numbers = fulfillment.get("tracking_numbers")
    return {
        "tracking_url": text_of(fulfillment.get("tracking_url"))
        or (text_of(urls[0]) if isinstance(urls, list) and urls else None),
        "tracking_number": text_of(fulfillment.get("tracking_number"))
        or (text_of(numbers[0]) if isinstance(numbers, list) and numbers else None),
        "tracking_company": text_of(fulfillment.get("tracking_company")),
        "status": text_of(fulfillment.get("shipment_status")) or text_of(fulfillment.get("status")),
    }


def _order_fields(order: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": text_of(order.get("id")),
        "name": text_of(order.get("name")),
        "number": text_of(order.get("order_number")),
        "total_price": text_of(order.get("total_price")),
        "currency": text_of(order.get("currency")),
        "status_url": text_of(order.get("order_status_url")),
    }


def map_topic(
    topic: str, payload: Mapping[str, Any], shop: ShopContext, *, received_at: datetime
) -> Actions:
    """The actions for one of EVENT_TOPICS; an unknown topic (or a payload without the id it
    needs) maps to no action."""
    shop_fields = {"domain": shop.shop, "name": shop.name}
    customer = _customer_fields(payload)

    def event(name: str, key: str, occurred: Any, **extra: Any) -> Event:
        return Event(
            account_id=shop.account_id,
            name=name,
            key=key,
            source=f"shopify:{shop.shop}",
            occurred_at=_when(occurred, received_at),
            phone=find_phone(payload),
            email=_email(payload),
            consent=find_consent(payload),
            timezone=shop.timezone,
            subject=extra.pop("subject", None),
            fields={"shop": shop_fields, "customer": customer, **extra},
        )

    def actions(*events: Event, clear: tuple[str, ...] = ()) -> Actions:
        destinations = tuple(d for e in events for d in (e.phone, e.email and e.email.lower()) if d)
        return Actions(
            clear_subjects=clear,
            events=events,
            customer_id=customer["id"],
            destinations=tuple(dict.fromkeys(destinations)),
        )

    if topic in (ORDERS_CREATE, ORDERS_FULFILLED):
        order_id = text_of(payload.get("id"))
        if order_id is None:
            return Actions()
        fields: dict[str, Any] = {"order": _order_fields(payload)}
        if topic == ORDERS_CREATE:
            checkout_token = text_of(payload.get("checkout_token"))
            return actions(
                event(names.ORDER_CREATED, f"order:{order_id}:created", payload.get("created_at"),
                      subject=f"order:{order_id}", **fields),
                clear=(f"checkout:{checkout_token}",) if checkout_token else (),
            )  # fmt: skip
        fulfillments = payload.get("fulfillments")
        if isinstance(fulfillments, list) and fulfillments:
            fields["shipment"] = _tracking(mapping_of(fulfillments[-1]))
            fields["tracking_url"] = fields["shipment"]["tracking_url"]
            fields["tracking_number"] = fields["shipment"]["tracking_number"]
        return actions(
            event(names.ORDER_FULFILLED, f"order:{order_id}:fulfilled",
                  payload.get("updated_at"), subject=f"order:{order_id}", **fields)
        )  # fmt: skip
    if topic in (FULFILLMENTS_CREATE, FULFILLMENTS_UPDATE):
        fulfillment_id = text_of(payload.get("id"))
        if fulfillment_id is None:
            return Actions()
        shipment = _tracking(payload)
        # one event per distinct tracking state: a resent update with nothing new acts once
        key = ":".join(
            ["fulfillment", fulfillment_id, shipment["status"] or "", shipment["tracking_number"]
             or "", text_of(payload.get("updated_at")) or ""]
        )  # fmt: skip
        # a fulfillment is named after its order: "#1001.2" is the second of order #1001
        name = text_of(payload.get("name"))
        order = {"id": text_of(payload.get("order_id")), "name": name and name.rsplit(".", 1)[0]}
        return actions(
            event(names.SHIPMENT_UPDATED, key, payload.get("updated_at"),
                  subject=f"order:{order['id']}", shipment=shipment, order=order,
                  tracking_url=shipment["tracking_url"],
                  tracking_number=shipment["tracking_number"])
        )  # fmt: skip
    if topic in (CHECKOUTS_CREATE, CHECKOUTS_UPDATE):
        token = text_of(payload.get("token"))
        if token is None:
            return Actions()
        subject = f"checkout:{token}"
        checkout = {
            "token": token,
            "url": text_of(payload.get("abandoned_checkout_url")),
            "total_price": text_of(payload.get("total_price")),
            "currency": text_of(payload.get("currency")),
        }
        if text_of(payload.get("completed_at")):
            return actions(
                event(names.CHECKOUT_COMPLETED, f"{subject}:completed",
                      payload.get("completed_at"), subject=subject, checkout=checkout,
                      checkout_url=checkout["url"]),
                clear=(subject,),
            )  # fmt: skip
        # Every update of a checkout would start one more reminder; one per number reached:
        # the first update that carries a phone starts the timer, later ones act no more.
        phone = find_phone(payload) or ""
        return actions(
            event(names.CHECKOUT_STARTED, f"{subject}:started:{phone}",
                  payload.get("updated_at") or payload.get("created_at"), subject=subject,
                  checkout=checkout, checkout_url=checkout["url"])
        )  # fmt: skip
    if topic == CUSTOMERS_CREATE:
        customer_id = text_of(payload.get("id"))
        if customer_id is None:
            return Actions()
        return actions(
            event(names.CUSTOMER_CREATED, f"customer:{customer_id}:created",
                  payload.get("created_at"), subject=f"customer:{customer_id}")
        )  # fmt: skip
    return Actions()
