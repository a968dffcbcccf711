"""Fixtures for customer callbacks end to end: containers that may call 127.0.0.1, receivers, helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from tests.conftest import SettingsFactory, open_client
from tests.e2e.conftest import PASSWORD, eventually

from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.testing.callback_receiver import ReceivedRequest, Receivers
from switchboard.testing.client import MessageCentralClient

# Loopback receivers are allowed only because the operator lists 127.0.0.1/32 (and thereby
# http and any port for it); every other address follows the SSRF rules.
CALLBACK_SETTINGS: dict[str, Any] = {
    "allow_networks": ["127.0.0.1/32"],
    "poll_interval_s": 0.05,
    "connect_timeout_s": 1.0,
    "total_timeout_s": 1.0,
}
SPEC_KEYS = [
    "apiKey", "clientId", "messageId", "status", "errorCode", "countryCode", "mobile",
    "submitDate", "doneDate",
]  # fmt: skip

ContainerFactory = Callable[..., Awaitable[Container]]
ClientFactory = Callable[..., Awaitable[MessageCentralClient]]


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    started = Receivers()
    yield started
    await started.stop_all()


@pytest.fixture
async def start_container(
    make_settings: SettingsFactory, clock: FrozenClock
) -> AsyncIterator[ContainerFactory]:
    """Start a container with workers; `webhooks` entries override CALLBACK_SETTINGS."""
    started: list[Container] = []

    async def start(webhooks: dict[str, Any] | None = None, **overrides: Any) -> Container:
        overrides.setdefault("tokens", {"ttl_s": 30 * 86400})  # tests move the clock by days
        settings = make_settings(webhooks={**CALLBACK_SETTINGS, **(webhooks or {})}, **overrides)
        built = build_container(settings, clock=clock)
        started.append(built)
        await built.start(run_workers=True)
        return built

    yield start
    for built in started:
        await built.stop()


@pytest.fixture
async def container(start_container: ContainerFactory) -> Container:
    return await start_container()


@pytest.fixture
async def api_for() -> AsyncIterator[ClientFactory]:
    """A signed-in API client for a new customer of a container."""
    opened: list[httpx.AsyncClient] = []

    async def make(built: Container, customer_id: str = "C-1") -> MessageCentralClient:
        await built.accounts.create_customer(
            email=f"{customer_id.lower()}@example.com", password=PASSWORD, customer_id=customer_id
        )
        http = await open_client(built)
        opened.append(http)
        api = MessageCentralClient(http, customer_id, PASSWORD)
        await api.fetch_token()
        return api

    yield make
    for http in opened:
        await http.aclose()


async def set_callback(mc: MessageCentralClient, url: str | None, **extra: Any) -> dict[str, Any]:
    response = await mc.http.put(
        "/api/v1/callbacks", json={"url": url, **extra}, headers=mc.headers()
    )
    body = response.json()
    assert response.status_code == 200, body
    data: dict[str, Any] = body["data"]
    return data


async def list_deliveries(mc: MessageCentralClient, **params: Any) -> list[dict[str, Any]]:
    response = await mc.http.get(
        "/api/v1/callbacks/deliveries", params=params, headers=mc.headers()
    )
    assert response.status_code == 200, response.json()
    found: list[dict[str, Any]] = response.json()["data"]["deliveries"]
    return found


async def get_delivery(mc: MessageCentralClient, delivery_id: str) -> dict[str, Any]:
    response = await mc.http.get(
        f"/api/v1/callbacks/deliveries/{delivery_id}", headers=mc.headers()
    )
    assert response.status_code == 200, response.json()
    found: dict[str, Any] = response.json()["data"]
    return found


async def wait_for_delivery(
    mc: MessageCentralClient, delivery_id: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The delivery once `check` holds for it (e.g. a settled attempt)."""
    seen: dict[str, Any] = {}

    async def holds() -> bool:
        seen.update(await get_delivery(mc, delivery_id))
        return check(seen)

    await eventually(holds)
    return seen


async def send_otp(mc: MessageCentralClient, number: str = "9876543210", **params: str) -> str:
    """Send an OTP; returns the id of the message that carries it (the callback's messageId)."""
    body = (await mc.send_otp(mobileNumber=number, **params)).json()
    assert body["responseCode"] == 200, body
    view = await mc.http.get(
        f"/api/v1/verifications/{body['data']['verificationId']}", headers=mc.headers()
    )
    message_id: str = view.json()["data"]["sends"][0]["messageId"]
    return message_id


def assert_signed_by(request: ReceivedRequest, *secrets: str) -> None:
    """Each secret's Standard Webhooks signature (reference library) is in the header.

    Unlike `Webhook.verify` this ignores the timestamp's age: tests move a frozen clock by days.
    """
    signatures = request.headers["webhook-signature"].split(" ")
    moment = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
    for secret in secrets:
        expected = Webhook(secret).sign(
            request.headers["webhook-id"], moment, request.body.decode()
        )
        assert expected in signatures


def advance(container: Container, clock: FrozenClock, seconds: float) -> None:
    """Move time on and let the webhook dispatcher look for due deliveries now."""
    clock.advance(seconds)
    container.webhooks.wake()
