"""Fixtures for the Shopify app: the fake Shopify, a container configured for it, an installed shop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from tests.conftest import SettingsFactory, open_client
from tests.e2e.conftest import PASSWORD

from switchboard.automations.events import Event
from switchboard.bootstrap import Container, build_container, build_shopify
from switchboard.clock import FrozenClock
from switchboard.integrations.shopify.app import ShopifyApp
from switchboard.testing.client import MessageCentralClient
from switchboard.testing.shopify_peer import ShopifyPeer

API_KEY = "switchboard-test-app"
API_SECRET = "shpss_" + "s" * 32
SHOP = "acme.myshopify.com"
APP_URL = "http://switchboard.test"
WEBHOOKS = "/integrations/shopify/webhooks"


@dataclass
class RecordingSink:
    """Stands in for the automation engine: what the app published, cleared and forgot."""

    published: list[Event] = field(default_factory=list)
    cleared: list[tuple[str, str]] = field(default_factory=list)
    forgotten: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    async def publish(self, event: Event) -> list[str]:
        if any(
            (e.account_id, e.source, e.key) == (event.account_id, event.source, event.key)
            for e in self.published
        ):
            return []
        self.published.append(event)
        return [event.key]

    async def clear_subject(self, account_id: str, subject: str) -> int:
        self.cleared.append((account_id, subject))
        return 0

    async def forget_recipient(
        self, account_id: str, *, phone: str | None, email: str | None
    ) -> int:
        self.forgotten.append((account_id, phone, email))
        return 0


@pytest.fixture
async def peer(clock: FrozenClock) -> AsyncIterator[ShopifyPeer]:
    shopify = ShopifyPeer(API_KEY, API_SECRET, clock=clock)
    shopify.add_shop(SHOP, name="Acme Store", timezone="Asia/Kolkata")
    await shopify.start()
    yield shopify
    await shopify.stop()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@dataclass
class Harness:
    container: Container
    app: ShopifyApp
    mc: MessageCentralClient
    http: httpx.AsyncClient
    peer: ShopifyPeer
    sink: RecordingSink
    customer_id: str

    async def install(self) -> httpx.Response:
        """The whole install: our link, our redirect, Shopify's approval, our callback."""
        link = await self.http.post(
            "/api/v1/integrations/shopify/install-link",
            json={"shop": SHOP},
            headers=self.mc.headers(),
        )
        assert link.status_code == 200, link.text
        url = urlsplit(link.json()["data"]["installUrl"])
        started = await self.http.get(f"{url.path}?{url.query}")
        assert started.status_code == 302, started.text
        async with httpx.AsyncClient() as browser:
            approved = await browser.get(started.headers["location"])
        assert approved.status_code == 302
        back = urlsplit(approved.headers["location"])
        return await self.http.get(f"{back.path}?{back.query}")

    def callback_params(self, response: httpx.Response) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(response.headers["location"]).query))

    async def emit(
        self,
        topic: str,
        payload: Mapping[str, Any],
        *,
        webhook_id: str | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        return await self.peer.emit(
            WEBHOOKS, topic, SHOP, payload, webhook_id=webhook_id, signature=signature,
            client=self.http,
        )  # fmt: skip

    async def status(self, webhook_id: str) -> str | None:
        return await self.app._store.webhook_status(webhook_id)


def shopify_settings(peer: ShopifyPeer) -> dict[str, Any]:
    return {
        "shopify": {
            "api_key": API_KEY,
            "api_secret": API_SECRET,
            "admin_base_url": peer.admin_base_url,
            "app_url": APP_URL,
            "poll_interval_s": 0.05,
        }
    }


async def open_harness(
    container: Container, peer: ShopifyPeer, sink: RecordingSink
) -> AsyncIterator[Harness]:
    await container.start(run_workers=True)
    account = await container.accounts.create_customer(
        email="dev@example.com", password=PASSWORD, customer_id="C-1", name="Acme"
    )
    assert container.shopify is not None
    try:
        async with await open_client(container) as http:
            mc = MessageCentralClient(http, account.id, PASSWORD)
            await mc.fetch_token()
            yield Harness(container, container.shopify, mc, http, peer, sink, account.id)
    finally:
        await container.stop()


@pytest.fixture
async def harness(
    make_settings: SettingsFactory, clock: FrozenClock, peer: ShopifyPeer, sink: RecordingSink
) -> AsyncIterator[Harness]:
    """The app with a recording sink in place of the engine: what it publishes, exactly."""
    settings = make_settings(integrations=shopify_settings(peer))
    container = build_container(settings, clock=clock)
    assert settings.integrations.shopify is not None
    assert container.shopify is not None
    await container.shopify.close()
    container.shopify = build_shopify(
        settings.integrations.shopify, container.database, container.vault, sink,
        container.personal_data, clock, container.secrets,
    )  # fmt: skip
    async for opened in open_harness(container, peer, sink):
        yield opened
