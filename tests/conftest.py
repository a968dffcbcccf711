"""Fixtures shared by every suite: databases (SQLite and PostgreSQL), containers, API clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from switchboard.api.app import create_app
from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.config import Settings, load_settings
from switchboard.storage.sql import migrate
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import metadata

PG_ADMIN_URL = os.environ.get(
    "SWITCHBOARD_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TEST_KEY = "k" * 64
TEST_PEPPER = "p" * 64


APP_ROLE = "switchboard_app"


def _ensure_app_role(connection: sa.Connection) -> None:
    """An ordinary login role (no superuser, no BYPASSRLS); test sessions running at once may race."""
    exists = connection.execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": APP_ROLE}
    ).first()
    if exists is None:
        with contextlib.suppress(sa.exc.ProgrammingError, sa.exc.IntegrityError):
            connection.execute(sa.text(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated once, dropped at the end."""
    name = f"switchboard_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            _ensure_app_role(connection)
            connection.execute(sa.text(f'CREATE DATABASE "{name}" OWNER {APP_ROLE}'))
    except sa.exc.OperationalError as exc:
        if os.environ.get("SWITCHBOARD_TEST_SKIP_PG"):
            pytest.skip(f"PostgreSQL unavailable: {exc}")
        raise
    # The server's own role, as in production: it owns (and migrates) its schema but is no
    # superuser, so the row-level security policies (migration 0016) hold for every test.
    url = f"postgresql://{APP_ROLE}@127.0.0.1:5432/{name}"
    migrate.upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _truncate(url: str) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        connection.execute(sa.text(f"TRUNCATE {names} CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs twice: on a new SQLite file and on a clean PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'switchboard.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'switchboard.db'}"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC))


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(database_url: str) -> SettingsFactory:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "token_signing_key": TEST_KEY,
            "otp_pepper": TEST_PEPPER,
            "worker": {"poll_interval_s": 0.05, "lease_s": 5},
            "server": {"shutdown_grace_s": 2, "access_log": True},
        }
        values.update(overrides)
        return load_settings(None, **values)

    return factory


@pytest.fixture
async def container(make_settings: SettingsFactory, clock: FrozenClock) -> AsyncIterator[Container]:
    built = build_container(make_settings(), clock=clock)
    await built.start(run_workers=True)
    yield built
    await built.stop()


async def open_client(built: Container) -> httpx.AsyncClient:
    app = create_app(built, manage_lifecycle=False)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://switchboard.test",
    )


@pytest.fixture
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    async with await open_client(container) as http:
        yield http


async def stop_while_claiming(
    database: Database,
    table: str,
    run: Callable[[], Coroutine[Any, Any, None]],
    stop: Callable[[float], Coroutine[Any, Any, None]],
) -> None:
    """Start a worker's `run`, hold its first claim back behind a write transaction (SQLite's
    one writer turn; a lock on `table` on PostgreSQL), ask it to `stop`, and check that the
    stop waits for that claim; returns once the stop has and the run has ended."""
    running = asyncio.create_task(run())
    try:
        async with database.write() as connection:
            if not database.is_sqlite:
                await connection.execute(sa.text(f"LOCK TABLE {table} IN EXCLUSIVE MODE"))
            await asyncio.sleep(0.2)  # the round is in its claim, waiting
            stopping = asyncio.create_task(stop(10))
            await asyncio.sleep(0.2)
            assert not stopping.done()  # the claim under way has not returned yet
        await asyncio.wait_for(stopping, 10)
        assert running.done()
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
