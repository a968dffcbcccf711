"""The console's SQL store: sessions by digest, revocation, purging, operators by e-mail."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from switchboard.console.store import ConsoleSession, Operator, SessionKind
from switchboard.errors import DuplicateResourceError
from switchboard.storage.sql import migrate
from switchboard.storage.sql.console import SqlConsoleStore
from switchboard.storage.sql.engines import Database

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _session(digest: str, expires_at: datetime) -> ConsoleSession:
    return ConsoleSession(
        digest=digest, kind=SessionKind.CUSTOMER, subject_id="C-1", token_version=1,
        created_at=NOW, expires_at=expires_at,
    )  # fmt: skip


async def test_sessions_are_revoked_and_purged_after_they_expire(database_url: str) -> None:
    migrate.upgrade(database_url)
    database = Database(database_url)
    store = SqlConsoleStore(database)
    try:
        await store.add_session(_session("a" * 64, NOW + timedelta(hours=1)))
        await store.add_session(_session("b" * 64, NOW - timedelta(days=2)))
        await store.revoke_session("a" * 64, NOW)
        kept = await store.get_session("a" * 64)
        assert kept is not None
        assert kept.revoked_at == NOW
        assert await store.purge_sessions(NOW - timedelta(days=1)) == 1
        assert await store.get_session("b" * 64) is None
    finally:
        await database.dispose()


async def test_operator_e_mails_are_unique_case_insensitively(database_url: str) -> None:
    migrate.upgrade(database_url)
    database = Database(database_url)
    store = SqlConsoleStore(database)
    operator = Operator(
        id="op1", email="Ops@Example.com", password_hash="x", token_version=1, enabled=True,
        created_at=NOW,
    )  # fmt: skip
    try:
        await store.add_operator(operator)
        found = await store.find_operator("ops@example.COM")
        assert found is not None
        assert found.id == "op1"
        with pytest.raises(DuplicateResourceError):
            await store.add_operator(replace(operator, id="op2", email="ops@example.com"))
    finally:
        await database.dispose()
