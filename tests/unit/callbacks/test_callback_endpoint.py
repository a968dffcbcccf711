"""Endpoint rules: which secrets sign during a rotation, the spec's errorCode and mobile, https/ports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from switchboard.callbacks.ssrf import AddressPolicy, DestinationRefusedError, StaticResolver
from switchboard.config import WebhookSettings
from switchboard.domain.callbacks import (
    CallbackEndpoint,
    callback_error_code,
    check_webhook_id,
    delivery_payload,
    national_number,
    new_webhook_id,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def endpoint(**changes: object) -> CallbackEndpoint:
    values: dict[str, object] = {
        "account_id": "C-1", "url": "https://hooks.example.com/dlr", "secret": "whsec_new",
        "previous_secret": None, "rotated_at": None, "disabled_at": None,
        "disabled_reason": None, "events": frozenset(),
    }  # fmt: skip
    values.update(changes)
    return CallbackEndpoint(**values)  # type: ignore[arg-type]


def test_the_previous_secret_signs_beside_the_new_one_for_the_overlap_only() -> None:
    rotated = endpoint(previous_secret="whsec_old", rotated_at=NOW)

    assert rotated.signing_secrets(NOW, DAY) == ("whsec_new", "whsec_old")
    assert rotated.signing_secrets(NOW + DAY - timedelta(seconds=1), DAY) == (
        "whsec_new",
        "whsec_old",
    )
    assert rotated.signing_secrets(NOW + DAY, DAY) == ("whsec_new",)
    assert endpoint().signing_secrets(NOW, DAY) == ("whsec_new",)
    assert endpoint(secret=None).signing_secrets(NOW, DAY) == ()


def test_an_endpoint_is_active_with_a_url_and_a_secret_until_disabled() -> None:
    assert endpoint().active
    assert not endpoint(url=None).active
    assert not endpoint(secret=None).active
    assert not endpoint(disabled_at=NOW).active


@pytest.mark.parametrize(
    ("raw", "code"),
    [(None, 0), ("000", 0), ("011", 11), ("131026", 131026), ("sandbox", 0), ("5.1.1", 0),
     ("1234567890", 0), ("-1", 0)],
)  # fmt: skip
def test_error_codes_are_numbers_when_the_provider_gave_digits(raw: str | None, code: int) -> None:
    assert callback_error_code(raw) == code


@pytest.mark.parametrize(
    ("destination", "country", "expected"),
    [("+919999999999", "91", "9999999999"), ("+14155550100", "1", "4155550100"),
     ("user@example.com", "91", None), ("+449999999999", "91", None), ("+91", "91", None),
     ("+919999999999", "", None)],
)  # fmt: skip
def test_national_number_is_what_follows_the_country_code(
    destination: str, country: str, expected: str | None
) -> None:
    assert national_number(destination, country) == expected


def test_a_report_without_a_number_has_a_null_mobile_and_keeps_every_key() -> None:
    payload = delivery_payload(
        message_id="m-1",
        status="DELIVRD",
        country_code="",
        national_number=None,
        submitted_at=NOW,
        done_at=NOW,
    )

    assert payload["mobile"] is None
    assert list(payload) == [
        "apiKey", "clientId", "messageId", "status", "errorCode", "countryCode", "mobile",
        "submitDate", "doneDate",
    ]  # fmt: skip


def test_new_webhook_ids_are_valid_and_distinct() -> None:
    ids = {new_webhook_id() for _ in range(100)}

    assert len(ids) == 100
    assert all(check_webhook_id(i) == i and len(i) <= 40 for i in ids)


PUBLIC = StaticResolver({"hooks.example.com": ["8.8.8.8"], "internal.test": ["127.0.0.1"]})


async def test_public_destinations_need_https_and_an_allowed_port_by_default() -> None:
    policy = AddressPolicy.from_settings(WebhookSettings(), resolver=PUBLIC)

    assert (await policy.check("https://hooks.example.com/dlr")).port == 443
    assert (await policy.check("https://hooks.example.com:8443/dlr")).port == 8443
    with pytest.raises(DestinationRefusedError, match="only https"):
        await policy.check("http://hooks.example.com/dlr")
    with pytest.raises(DestinationRefusedError, match="port 8080"):
        await policy.check("https://hooks.example.com:8080/dlr")
    assert PUBLIC.lookups == ["hooks.example.com", "hooks.example.com"]  # refusals resolve nothing


async def test_allow_listed_networks_may_use_http_and_any_port_and_nothing_else_may() -> None:
    settings = WebhookSettings(allow_networks=["127.0.0.1/32"])
    policy = AddressPolicy.from_settings(settings, resolver=PUBLIC)

    assert (await policy.check("http://internal.test:8080/dlr")).port == 8080
    assert (await policy.check("http://127.0.0.1:9/dlr")).port == 9
    with pytest.raises(DestinationRefusedError, match="only https"):
        await policy.check("http://hooks.example.com/dlr")
    with pytest.raises(DestinationRefusedError, match="not a public address"):
        await policy.check("https://127.0.0.2/dlr")


async def test_an_empty_port_list_allows_any_port() -> None:
    policy = AddressPolicy.from_settings(WebhookSettings(allowed_ports=[]), resolver=PUBLIC)

    assert (await policy.check("https://hooks.example.com:9000/dlr")).port == 9000


def test_ports_outside_the_tcp_range_are_a_settings_error() -> None:
    with pytest.raises(ValueError, match="1-65535"):
        WebhookSettings(allowed_ports=[0])
