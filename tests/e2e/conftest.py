"""Fixtures for driving the HTTP API as a Message Central client does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from tests.conftest import open_client

from switchboard.bootstrap import Container
from switchboard.testing.client import MessageCentralClient

PASSWORD = "correct horse battery"


@pytest.fixture
async def customer(container: Container) -> str:
    account = await container.accounts.create_customer(
        email="dev@example.com", password=PASSWORD, customer_id="C-33432A5F49F7404", name="Acme"
    )
    return account.id


@pytest.fixture
async def mc(client: httpx.AsyncClient, customer: str) -> MessageCentralClient:
    api = MessageCentralClient(client, customer, PASSWORD)
    await api.fetch_token()
    return api


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, interval_s: float = 0.05
) -> None:
    """Wait until `check` holds; fail after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


@pytest.fixture
async def start_api() -> AsyncIterator[Callable[..., Awaitable[MessageCentralClient]]]:
    """Start a container built by the test, with customer C-1 and a client holding its token."""
    opened: list[tuple[Container, httpx.AsyncClient]] = []

    async def start(built: Container, *, workers: bool = True) -> MessageCentralClient:
        await built.start(run_workers=workers)
        await built.accounts.create_customer(
            email="dev@example.com", password=PASSWORD, customer_id="C-1", name="Acme"
        )
        http = await open_client(built)
        opened.append((built, http))
        api = MessageCentralClient(http, "C-1", PASSWORD)
        await api.fetch_token()
        return api

    yield start
    for built, http in opened:
        await http.aclose()
        await built.stop()
