"""Shared by the Pipedrive app's tests: the fake Pipedrive, a container wired to it, page helpers."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.conftest import SettingsFactory, open_client
from tests.e2e.conftest import PASSWORD

from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.testing.pipedrive_peer import PipedrivePeer

CALLBACK = "/integrations/pipedrive/callback"
_SESSION = re.compile(r'name="session" value="([^"]+)"')


@pytest.fixture
async def pipedrive() -> AsyncIterator[PipedrivePeer]:
    peer = PipedrivePeer()
    await peer.start()
    yield peer
    await peer.stop()


def pipedrive_settings(peer: PipedrivePeer) -> dict[str, Any]:
    return {
        "pipedrive": {
            "client_id": peer.client_id, "client_secret": peer.client_secret,
            "oauth_base_url": peer.url, "api_base_url": peer.url,
            "public_url": "http://switchboard.test", "note_poll_s": 0.05,
            "max_retry_after_s": 2, "allow_loopback_api": True,
        }
    }  # fmt: skip


@dataclass
class App:
    """The container, an HTTP client on it, and the fake Pipedrive it talks to."""

    container: Container
    http: httpx.AsyncClient
    peer: PipedrivePeer
    clock: FrozenClock

    async def install(self) -> str:
        """Pipedrive's consent → our callback; returns the settings page's session."""
        code = self.peer.issue_code(f"http://switchboard.test{CALLBACK}")
        page = await self.http.get(CALLBACK, params={"code": code})
        assert page.status_code == 200, page.text
        return session_of(page)

    async def save_settings(self, session: str, **fields: str) -> httpx.Response:
        form = {"session": session, "customer_id": "C-1", "email": "dev@example.com",
                "password": PASSWORD, "sender_id": "ACMEIN", "message_type": "TRANSACTIONAL",
                "default_country_code": "91", **fields}  # fmt: skip
        return await self.http.post("/integrations/pipedrive/settings", data=form)

    def link(self, path: str, *, view: str, ids: list[int], **token_args: Any) -> str:
        query = self.peer.link_query(
            view=view, selected_ids=ids, now=self.clock.now().timestamp(), **token_args
        )
        return f"/integrations/pipedrive/{path}?{query}"

    async def compose(
        self, ids: list[int], message: str, *, view: str = "list"
    ) -> tuple[str, httpx.Response]:
        """Open the link action and preview `message`; returns the session and the preview."""
        page = await self.http.get(self.link("sms", view=view, ids=ids))
        assert page.status_code == 200, page.text
        session = session_of(page)
        preview = await self.http.post(
            "/integrations/pipedrive/sms",
            data={"session": session, "message": message, "action": "preview"},
        )
        return session, preview

    async def send(self, session: str, message: str) -> httpx.Response:
        return await self.http.post(
            "/integrations/pipedrive/sms",
            data={"session": session, "message": message, "action": "send"},
        )


def session_of(page: httpx.Response) -> str:
    found = _SESSION.search(page.text)
    assert found is not None, page.text
    return html.unescape(found.group(1))


def cell(page: httpx.Response, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">([^<]*)<', page.text)
    assert found is not None, page.text
    return html.unescape(found.group(1))


async def start_app(
    make_settings: SettingsFactory, clock: FrozenClock, peer: PipedrivePeer, **overrides: Any
) -> tuple[Container, httpx.AsyncClient]:
    settings = make_settings(integrations=pipedrive_settings(peer), **overrides)
    built = build_container(settings, clock=clock)
    await built.start(run_workers=True)
    await built.accounts.create_customer(
        email="dev@example.com", password=PASSWORD, customer_id="C-1", name="Acme"
    )
    return built, await open_client(built)


@pytest.fixture
async def app(
    make_settings: SettingsFactory, clock: FrozenClock, pipedrive: PipedrivePeer
) -> AsyncIterator[App]:
    built, http = await start_app(make_settings, clock, pipedrive)
    yield App(built, http, pipedrive, clock)
    await http.aclose()
    await built.stop()
