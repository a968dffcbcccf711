"""Fixtures for driving the HTTP API as a Message Central client does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

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
