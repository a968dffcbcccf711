"""A real uvicorn server on 127.0.0.1 for the Python client's and the CLI's tests."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.types import ASGIApp
from tests.conftest import SettingsFactory
from tests.e2e.conftest import PASSWORD, eventually

from switchboard.api.app import create_app
from switchboard.bootstrap import Container, build_container
from switchboard.client import AsyncClient, Client, Credentials
from switchboard.clock import FrozenClock
from switchboard.testing.loopback import LoopbackServer

NUMBER = "9876543210"
E164 = "+919876543210"
CREDENTIALS = Credentials(customer_id="C-1", password=PASSWORD, email="dev@example.com")


@dataclass
class Served:
    url: str
    container: Container
    clock: FrozenClock

    def now(self) -> float:
        return self.clock.now().timestamp()

    def client(self, **options: Any) -> AsyncClient:
        return AsyncClient(self.url, CREDENTIALS, clock=self.now, **options)

    def sync_client(self, **options: Any) -> Client:
        return Client(self.url, CREDENTIALS, clock=self.now, **options)

    async def code_sent_to(self, api: AsyncClient, destination: str) -> str:
        """The newest code the sandbox carrier "sent" to a destination."""
        found: list[str] = []

        async def arrived() -> bool:
            async with httpx.AsyncClient(base_url=self.url) as http:
                answer = await http.get(
                    "/api/v1/sandbox/outbox", headers={"authToken": await api.token()}
                )
            for entry in answer.json()["data"]["messages"]:
                match = re.search(r"\b(\d{4,8})\b", entry["text"])
                if entry["destination"] == destination and match:
                    found.append(match.group(1))
            return bool(found)

        await eventually(arrived)
        return found[-1]

    async def count(self, table: sa.Table) -> int:
        async with self.container.database.read() as connection:
            query = sa.select(sa.func.count()).select_from(table)
            return int((await connection.execute(query)).one()[0])


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture(name="serve")
async def serve_fixture(make_settings: SettingsFactory, clock: FrozenClock) -> AsyncIterator[Serve]:
    opened: list[tuple[Container, LoopbackServer]] = []

    async def start(wrap: Callable[[ASGIApp], ASGIApp] | None = None, **overrides: Any) -> Served:
        values: dict[str, Any] = {
            "webhooks": {"allow_networks": ["127.0.0.1/32"], "allowed_ports": []},
            **overrides,
        }
        built = build_container(make_settings(**values), clock=clock)
        await built.start(run_workers=True)
        await built.accounts.create_customer(
            email="dev@example.com", password=PASSWORD, customer_id="C-1", name="Acme"
        )
        app = create_app(built, manage_lifecycle=False)
        server = LoopbackServer(wrap(app) if wrap else app)
        await server.start()
        opened.append((built, server))
        return Served(server.url, built, clock)

    yield start
    for built, server in opened:
        await server.stop()
        await built.stop()
