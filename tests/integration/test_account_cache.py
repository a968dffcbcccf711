"""The token check's account cache over a real store: what it serves, and how long."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from switchboard.domain.accounts import Account
from switchboard.storage.account_cache import CachedAccountStore
from switchboard.storage.sql import migrate
from switchboard.storage.sql.accounts import SqlAccountStore
from switchboard.storage.sql.engines import Database

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _account(account_id: str = "acme") -> Account:
    return Account(
        id=account_id, email=f"{account_id}@example.com", name="Acme", password_hash="x",
        enabled=True, token_version=1, failed_logins=0, consecutive_failures=0,
        first_failure_at=None, locked_until=None, created_at=NOW, updated_at=NOW,
    )  # fmt: skip


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    migrate.upgrade(database_url)
    db = Database(database_url)
    yield db
    await db.dispose()


async def test_another_process_change_is_seen_once_the_copy_is_older_than_ttl(
    database: Database,
) -> None:
    ticks = Ticks()
    cache = CachedAccountStore(SqlAccountStore(database), ttl_s=2.0, monotonic=ticks)
    elsewhere = SqlAccountStore(database)  # as the CLI in another process would write
    await cache.create_account(_account())
    assert (await cache.cached_account("acme")) is not None
    await elsewhere.update_account("acme", NOW, enabled=False, token_version=2)
    ticks.now += 1.9
    stale = await cache.cached_account("acme")
    assert stale is not None
    assert stale.enabled
    assert stale.token_version == 1
    ticks.now += 0.2
    fresh = await cache.cached_account("acme")
    assert fresh is not None
    assert not fresh.enabled
    assert fresh.token_version == 2


async def test_changes_through_the_cache_are_seen_at_once(database: Database) -> None:
    ticks = Ticks()
    cache = CachedAccountStore(SqlAccountStore(database), ttl_s=60.0, monotonic=ticks)
    await cache.create_account(_account())
    await cache.cached_account("acme")
    await cache.update_account("acme", NOW, token_version=7)
    account = await cache.cached_account("acme")
    assert account is not None
    assert account.token_version == 7
    await cache.get_account("acme")
    await SqlAccountStore(database).update_account("acme", NOW, enabled=False)
    await cache.reset_login_failures("acme")  # any write through the cache drops the copy
    account = await cache.cached_account("acme")
    assert account is not None
    assert not account.enabled


async def test_unknown_ids_are_never_remembered_and_ttl_zero_always_reads(
    database: Database,
) -> None:
    cache = CachedAccountStore(SqlAccountStore(database), ttl_s=0, monotonic=Ticks())
    assert await cache.cached_account("acme") is None
    await SqlAccountStore(database).create_account(_account())
    assert await cache.cached_account("acme") is not None
    await SqlAccountStore(database).update_account("acme", NOW, enabled=False)
    account = await cache.cached_account("acme")
    assert account is not None
    assert not account.enabled
