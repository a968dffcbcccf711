"""The fraud guard's counters in Redis, and the database behind it when Redis is down."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from tests.e2e.test_fraud import ATTACK_RANGE, guarded  # noqa: F401 (the fixture)

from switchboard.fraud.store import WRITES, WRITES_MINUTE
from switchboard.storage.sql.tables import fraud_counters

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def key_prefix() -> AsyncIterator[str]:
    """A namespace of this test's own on the shared Redis, removed afterwards."""
    prefix = f"switchboard-test:{uuid.uuid4().hex[:12]}"
    yield prefix
    client: Any = aioredis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _send_range(mc: Any, count: int, clock: Any) -> list[int]:
    codes = []
    for i in range(count):
        clock.advance(1)
        codes.append((await mc.send_otp(mobileNumber=str(ATTACK_RANGE + i))).json()["responseCode"])
    return codes


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_counters_go_to_redis_and_the_prefix_is_still_blocked(
    guarded: Callable[..., Any],  # noqa: F811
    clock: Any,
    key_prefix: str,
) -> None:
    container, mc = await guarded(
        fraud={"redis_url": REDIS_URL, "redis_key_prefix": key_prefix, "sync_interval_s": 0}
    )
    assert await _send_range(mc, 11, clock) == [200] * 10 + [800]
    client: Any = aioredis.from_url(REDIS_URL)
    counted = await client.hgetall(f"{key_prefix}:C-1:p:+919876500")
    await client.aclose()
    assert sum(int(v) for v in counted.values()) == 10
    async with container.database.read() as connection:
        rows = await connection.scalar(sa.select(sa.func.count()).select_from(fraud_counters))
    assert rows == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_redis_down_falls_back_to_the_database(
    guarded: Callable[..., Any],  # noqa: F811
    clock: Any,
) -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    container, mc = await guarded(
        fraud={"redis_url": url, "redis_timeout_s": 0.2, "sync_interval_s": 0}
    )
    assert await _send_range(mc, 11, clock) == [200] * 10 + [800]
    async with container.database.read() as connection:
        counted = await connection.scalar(
            sa.select(sa.func.sum(fraud_counters.c.count)).where(
                fraud_counters.c.name == "p:+919876500"
            )
        )
    assert counted == 10


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_redis_down_without_the_fallback_fails_closed(
    guarded: Callable[..., Any],  # noqa: F811
) -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    _, mc = await guarded(
        fraud={"redis_url": url, "redis_timeout_s": 0.2, "redis_fallback_to_database": False}
    )
    refused = (await mc.send_otp(mobileNumber="9876543210")).json()
    assert refused["responseCode"] == 800
    assert "fraud check unavailable" in refused["errorMessage"]


async def test_a_busy_redis_counter_drops_minutes_older_than_its_window(key_prefix: str) -> None:
    from switchboard.fraud.redis_counters import RedisCounterStore

    store = RedisCounterStore(REDIS_URL, timeout_s=2, ttl_s=3600, key_prefix=key_prefix)
    try:
        # a counter written every minute for three hours: its key never expires as a whole
        await store.add({("C-1", "a", minute): 1 for minute in range(1000, 1180)})
        found = await store.read("C-1", ["a"], since_minute=1120)
        assert sorted(found["a"]) == list(range(1120, 1180))
        client: Any = aioredis.from_url(REDIS_URL)
        kept = sorted(int(m) for m in await client.hkeys(f"{key_prefix}:C-1:a"))
        await client.aclose()
        assert kept == list(range(1179 - 60, 1180))  # the last hour (the ttl) and no more
    finally:
        await store.close()


async def test_the_write_count_never_expires_and_a_fallbacks_is_not_taken_for_redis(
    key_prefix: str, container: Any
) -> None:
    """A write count that expired could restart and repeat a value a process saw (it would
    miss another's writes); the database's count, answered while Redis is down, is not
    Redis's, so the fallback leaves it out (the guard then reads back)."""
    from switchboard.fraud.redis_counters import FallbackCounterStore, RedisCounterStore

    store = RedisCounterStore(REDIS_URL, timeout_s=2, ttl_s=3600, key_prefix=key_prefix)
    down = RedisCounterStore(
        f"redis://127.0.0.1:{_closed_port()}/0", timeout_s=0.2, ttl_s=3600, key_prefix=key_prefix
    )
    fallback = FallbackCounterStore(down, container.fraud._counters)
    try:
        totals = await store.add({("C-1", WRITES, WRITES_MINUTE): 1, ("C-1", "a", 1000): 1})
        assert totals == {("C-1", WRITES, WRITES_MINUTE): 1, ("C-1", "a", 1000): 1}
        client: Any = aioredis.from_url(REDIS_URL)
        assert await client.ttl(f"{key_prefix}:C-1:{WRITES}") == -1  # no expiry
        assert 0 < await client.ttl(f"{key_prefix}:C-1:a") <= 3600
        await client.aclose()
        answered = await fallback.add({("C-1", WRITES, WRITES_MINUTE): 1, ("C-1", "a", 1000): 1})
        assert answered == {("C-1", "a", 1000): 1}  # from the database, without its count
    finally:
        await store.close()
        await down.close()
