"""Shopify topics → automation events, and Shopify's signatures checked against its own library."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
import shopify  # type: ignore[import-untyped]  # Shopify's own library (ShopifyAPI) plays its side

from switchboard.automations import events as names
from switchboard.integrations.shopify import signing
from switchboard.integrations.shopify.topics import (
    ShopContext,
    find_consent,
    find_phone,
    map_topic,
)
from switchboard.testing.shopify_peer import ShopifyPeer

SECRET = "hush"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SHOP = ShopContext(
    account_id="C-1", shop="acme.myshopify.com", name="Acme", timezone="Asia/Kolkata"
)


def test_callback_query_signed_by_shopifys_library_is_accepted() -> None:
    shopify.Session.secret = SECRET
    params = {"code": "abc", "host": "YWNtZQ", "shop": "acme.myshopify.com",
              "state": "n%o=n&ce", "timestamp": "1796234180"}  # fmt: skip
    params["hmac"] = shopify.Session.calculate_hmac(params)
    assert signing.is_signed_query(SECRET, params)
    assert not signing.is_signed_query(SECRET, {**params, "shop": "evil.myshopify.com"})


def test_the_peers_callback_query_passes_shopifys_library_check() -> None:
    shopify.Session.secret = SECRET
    peer = ShopifyPeer("key", SECRET)
    peer.add_shop("acme.myshopify.com")
    assert shopify.Session.validate_hmac(peer.callback_query("acme.myshopify.com", "state-1"))


def test_webhook_hmac_is_base64_of_hmac_sha256_over_the_raw_body() -> None:
    body = b'{"id": 1, "note": "caf\\u00e9"}'
    expected = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    assert signing.is_signed_webhook(SECRET, body, expected)
    assert not signing.is_signed_webhook(SECRET, body + b" ", expected)
    assert not signing.is_signed_webhook(SECRET, body, None)


@pytest.mark.parametrize(
    ("shop", "valid"),
    [("acme.myshopify.com", True), ("a-1.myshopify.com", True), ("-a.myshopify.com", False),
     ("acme.myshopify.com.evil.com", False), ("evil.com/acme.myshopify.com", False),
     ("acme.example.com", False), ("", False)],
)  # fmt: skip
def test_only_myshopify_domains_are_shops(shop: str, valid: bool) -> None:
    assert signing.is_shop_domain(shop) is valid


def test_install_link_names_its_customer_and_shop_and_expires() -> None:
    key = b"k" * 32
    token = signing.sign_install_link(key, "C-1", "acme.myshopify.com", NOW + timedelta(hours=1))
    assert signing.read_install_link(key, token, NOW) == ("C-1", "acme.myshopify.com")
    assert signing.read_install_link(key, token, NOW + timedelta(hours=2)) is None
    assert signing.read_install_link(b"x" * 32, token, NOW) is None
    body, _, mac = token.partition(".")
    assert signing.read_install_link(key, body[:-2] + "AA." + mac, NOW) is None


def test_phone_comes_from_the_first_field_that_holds_a_valid_number() -> None:
    assert find_phone({"phone": "+919876543210"}) == "+919876543210"
    assert find_phone({"phone": "garbage", "customer": {"phone": "+14155550100"}}) == "+14155550100"
    assert (
        find_phone({"billing_address": {"phone": "(415) 555-0100", "country_code": "US"}})
        == "+14155550100"
    )
    assert find_phone({"shipping_address": {"phone": "+447911123456"}}) == "+447911123456"
    assert find_phone({"phone": None}) is None


@pytest.mark.parametrize(
    ("state", "consent"),
    [("subscribed", True), ("not_subscribed", False), ("unsubscribed", False),
     ("redacted", False), (None, None)],
)  # fmt: skip
def test_consent_is_the_customers_sms_marketing_state(
    state: str | None, consent: bool | None
) -> None:
    customer = {"sms_marketing_consent": {"state": state}} if state else {}
    assert find_consent({"customer": customer}) is consent


def test_fulfillment_update_carries_tracking_and_the_order_name() -> None:
    actions = map_topic(
        "fulfillments/update",
        {"id": 5, "order_id": 1001, "name": "#1001.1", "tracking_number": "1Z999",
         "tracking_urls": ["https://track.test/1Z999"], "shipment_status": "in_transit",
         "destination": {"phone": "+919876543210"}, "updated_at": "2026-12-02T11:00:00Z"},
        SHOP, received_at=NOW,
    )  # fmt: skip
    [event] = actions.events
    assert event.name == names.SHIPMENT_UPDATED
    assert event.fields["tracking_url"] == "https://track.test/1Z999"
    assert event.fields["tracking_number"] == "1Z999"
    assert event.fields["order"]["name"] == "#1001"
    assert event.phone == "+919876543210"
    assert event.occurred_at == datetime(2026, 12, 2, 11, 0, tzinfo=UTC)


def test_a_checkout_update_with_completed_at_completes_and_clears_it() -> None:
    actions = map_topic(
        "checkouts/update", {"token": "t1", "completed_at": "2026-12-02T11:00:00Z"}, SHOP,
        received_at=NOW,
    )  # fmt: skip
    assert [e.name for e in actions.events] == [names.CHECKOUT_COMPLETED]
    assert actions.clear_subjects == ("checkout:t1",)


def test_checkout_updates_for_the_same_number_are_one_event() -> None:
    keys = {
        map_topic("checkouts/update", {"token": "t1", "phone": "+919876543210",
                  "updated_at": f"2026-12-02T11:0{n}:00Z"}, SHOP, received_at=NOW).events[0].key
        for n in range(3)
    }  # fmt: skip
    assert len(keys) == 1


def test_customer_created_and_unknown_topics() -> None:
    [event] = map_topic(
        "customers/create", {"id": 9, "phone": "+919876543210", "first_name": "Asha",
                             "sms_marketing_consent": {"state": "subscribed"}},
        SHOP, received_at=NOW,
    ).events  # fmt: skip
    assert event.name == names.CUSTOMER_CREATED
    assert event.consent is True
    assert event.fields["customer"]["first_name"] == "Asha"
    assert map_topic("orders/cancelled", {"id": 1}, SHOP, received_at=NOW).events == ()
    assert map_topic("orders/create", {}, SHOP, received_at=NOW).events == ()
