"""Fixtures for CleverTap end to end: a container that may call 127.0.0.1, CleverTap's two sides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.e2e.callbacks.conftest import (  # noqa: F401
    api_for,
    receivers,
    start_container,
)
from tests.e2e.conftest import PASSWORD

from switchboard.integrations.clevertap.api import SEND_PATH
from switchboard.testing.clevertap_peer import CleverTapReceiver, CleverTapSender
from switchboard.testing.client import MessageCentralClient


@pytest.fixture
async def clevertap() -> AsyncIterator[CleverTapReceiver]:
    receiver = CleverTapReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


async def set_clevertap(mc: MessageCentralClient, **settings: Any) -> httpx.Response:
    return await mc.http.put("/api/v1/clevertap", json=settings, headers=mc.headers())


def sender_for(
    mc: MessageCentralClient, http: httpx.AsyncClient | None = None, **options: Any
) -> CleverTapSender:
    """CleverTap configured as the spec says: the five header pairs and its JSON template."""
    return CleverTapSender.with_password(
        http or mc.http, SEND_PATH, mc.customer_id, f"{mc.customer_id.lower()}@example.com",
        PASSWORD, **options,
    )  # fmt: skip
