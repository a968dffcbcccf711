"""The guard's counters in Redis (one hash per account and counter, a field per minute), and
the fallback to the database when Redis does not answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from switchboard.fraud.store import WRITES, Bucket, CounterStore, CountersUnavailableError
from switchboard.observability import get_logger

log = get_logger("switchboard.fraud")


class RedisCounterStore:
    def __init__(
        self, url: str, *, timeout_s: float, ttl_s: int, key_prefix: str = "switchboard:fraud"
    ) -> None:
        self._redis: Any = aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._ttl_s = ttl_s
        self._prefix = key_prefix

    def _key(self, account_id: str, name: str) -> str:
        return f"{self._prefix}:{account_id}:{name}"

    async def add(self, increments: Mapping[Bucket, int]) -> dict[Bucket, int]:
        if not increments:
            return {}
        buckets = list(increments)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                keys = set()
                for (account_id, name, minute), count in increments.items():
                    key = self._key(account_id, name)
                    pipe.hincrby(key, str(minute), count)
                    if name != WRITES:
                        keys.add(key)
                for key in keys:  # a counter unused for a day goes away by itself
                    pipe.expire(key, self._ttl_s)
                answers = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CountersUnavailableError(f"redis: {type(exc).__name__}") from exc
        return {bucket: int(total) for bucket, total in zip(buckets, answers, strict=False)}

    async def read(
        self, account_id: str, names: Sequence[str], since_minute: int
    ) -> dict[str, dict[int, int]]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self._key(account_id, name))
                hashes = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CountersUnavailableError(f"redis: {type(exc).__name__}") from exc
        found: dict[str, dict[int, int]] = {}
        stale: dict[str, list[bytes | str]] = {}
        keep_minutes = self._ttl_s // 60
        for name, fields in zip(names, hashes, strict=True):
            minutes = {int(m): (m, int(c)) for m, c in fields.items()}
            buckets = {m: c for m, (_, c) in minutes.items() if m >= since_minute}
            if buckets:
                found[name] = buckets
            # A counter written every minute never expires as a whole: its minutes older than
            # the longest window read (the key's ttl) are dropped here, so the hash stays small.
            newest = max(minutes, default=0)
            old = [raw for m, (raw, _) in minutes.items() if m < newest - keep_minutes]
            if old:
                stale[self._key(account_id, name)] = old
        if stale:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, fields_to_drop in stale.items():
                        pipe.hdel(key, *fields_to_drop)
                    await pipe.execute()
            except (RedisError, OSError):
                log.warning("fraud counters: dropping old minutes failed; next read retries")
        return found

    async def prune(self, before_minute: int) -> None:
        return None  # old minutes go at the next read of their counter; idle keys expire

    async def close(self) -> None:
        await self._redis.aclose()


class FallbackCounterStore:
    """Redis first; the database when Redis fails (its counts start from what it has)."""

    def __init__(self, primary: CounterStore, fallback: CounterStore) -> None:
        self._primary = primary
        self._fallback = fallback

    async def add(self, increments: Mapping[Bucket, int]) -> dict[Bucket, int]:
        try:
            return await self._primary.add(increments)
        except CountersUnavailableError as exc:
            log.warning("fraud counters: redis unavailable, using the database", error=str(exc))
            totals = await self._fallback.add(increments)
        # the database's write counts are not Redis's: left out, they read as "another process
        # may have written" (the guard reads back), never as "nobody did"
        return {bucket: total for bucket, total in totals.items() if bucket[1] != WRITES}

    async def read(
        self, account_id: str, names: Sequence[str], since_minute: int
    ) -> dict[str, dict[int, int]]:
        try:
            return await self._primary.read(account_id, names, since_minute)
        except CountersUnavailableError as exc:
            log.warning("fraud counters: redis unavailable, using the database", error=str(exc))
            return await self._fallback.read(account_id, names, since_minute)

    async def prune(self, before_minute: int) -> None:
        await self._primary.prune(before_minute)
        await self._fallback.prune(before_minute)

    async def close(self) -> None:
        await self._primary.close()
        await self._fallback.close()
