"""Engines for SQLite and PostgreSQL, and the Database handle that hands out transactions."""

from __future__ import annotations

import asyncio
import warnings
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from switchboard import tenancy
from switchboard.observability import get_logger
from switchboard.storage.sql import inline_sqlite

log = get_logger("switchboard.storage")

# Hooks of the open write() transactions. Kept beside the connection, not in its `info`:
# reading `info` of a connection invalidated by a cancellation raises, and must not replace
# the CancelledError on the way out.
_after_commit: weakref.WeakKeyDictionary[AsyncConnection, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)


def after_commit(connection: AsyncConnection, hook: Callable[[], None]) -> None:
    """Run `hook` once the `Database.write()` transaction of `connection` has committed.

    For wake-ups: a worker woken before the commit would not see the new rows (PostgreSQL).
    Hooks of a transaction that rolls back never run; outside `write()` the hook runs at once.
    """
    hooks = _after_commit.get(connection)
    if hooks is None:
        hook()
    elif hook not in hooks:
        hooks.append(hook)


BeforeCommit = Callable[[AsyncConnection], Awaitable[None]]
_before_commit: weakref.WeakKeyDictionary[AsyncConnection, list[BeforeCommit]] = (
    weakref.WeakKeyDictionary()
)


async def before_commit(connection: AsyncConnection, hook: BeforeCommit) -> None:
    """Run `hook(connection)` as the last statements of the `Database.write()` transaction.

    For work that must take its locks last, e.g. crediting a wallet after the message rows a
    transaction changed (lock order avoids deadlocks on PostgreSQL). A hook that raises rolls
    the transaction back. Registered twice, it runs once; outside `write()` it runs at once.
    """
    hooks = _before_commit.get(connection)
    if hooks is None:
        await hook(connection)
    elif hook not in hooks:
        hooks.append(hook)


def async_url(database_url: str) -> str:
    """`sqlite:///p` → aiosqlite, `postgresql://…` → psycopg 3 (async)."""
    if database_url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + database_url.removeprefix("sqlite:///")
    if database_url.startswith("postgresql://"):
        return "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    return database_url


def sync_url(database_url: str) -> str:
    """The same database for synchronous tools (Alembic)."""
    if database_url.startswith("postgresql://"):
        return "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    return database_url


# Row-level security (migration 0016): the policies show a connection the rows of the account in
# `switchboard.account_id`, or every row when it is '*'. Our connections start at '*' (workers and
# group commits serve every account); a transaction opened in a customer's scope narrows it to
# that account for itself alone (`set_config(…, true)` is SET LOCAL). Any other client of the
# database sees nothing until it says whose rows it serves.
SCOPE_SETTING = "switchboard.account_id"
_ALL_ACCOUNTS_OPTION = f"-c {SCOPE_SETTING}=*"
_NARROW = sa.text(f"SELECT set_config('{SCOPE_SETTING}', :account, true)")
_POOL_TIMEOUT_S = 60


def _all_accounts_options(url: str) -> str:
    """The connection's `options`: the URL's own (`?options=-c statement_timeout=…`) and the
    scope setting. The driver's keyword would replace the URL's, not add to it."""
    own = sa.engine.make_url(url).query.get("options", ())
    return " ".join([*((own,) if isinstance(own, str) else own), _ALL_ACCOUNTS_OPTION])


def sync_engine(database_url: str, **options: Any) -> sa.Engine:
    """A synchronous engine (Alembic, tools, tests) that sees every account's rows."""
    url = sync_url(database_url)
    if url.startswith("postgresql"):
        options.setdefault("connect_args", {})["options"] = _all_accounts_options(url)
    return sa.create_engine(url, **options)


def _sqlite_engine(path: str, *, immediate: bool, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        "sqlite+aiosqlite:///" + path,
        async_creator=inline_sqlite.connector(path),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=_POOL_TIMEOUT_S,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The connection is in autocommit mode, so the BEGIN below is ours to choose: a
        # writer takes the lock up front (IMMEDIATE) instead of failing on upgrade.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@asynccontextmanager
async def _turn(turns: asyncio.Semaphore | None) -> AsyncIterator[None]:
    """Wait for a turn in arrival order (as long as the pool would have let us wait)."""
    if turns is None:
        yield
        return
    async with asyncio.timeout(_POOL_TIMEOUT_S):
        await turns.acquire()
    try:
        yield
    finally:
        turns.release()


class ConnectionsInUseWarning(UserWarning):
    """`Database.dispose()` found connections still checked out."""


class Database:
    """Transactions for the store: `write()` for changes, `read()` for queries.

    SQLite allows one writer at a time, so writes go through a single connection that begins
    with BEGIN IMMEDIATE; reads use a pool of their own. PostgreSQL uses one pool for both.
    """

    def __init__(self, database_url: str, *, pool_size: int = 10) -> None:
        self.url = database_url
        self.dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
        url = async_url(database_url)
        if self.dialect == "sqlite":
            path = database_url.removeprefix("sqlite:///")
            self._writer = _sqlite_engine(path, immediate=True, pool_size=1)
            self._reader = _sqlite_engine(path, immediate=False, pool_size=2)
            # Turns in arrival order, one per pooled connection. The pool's own queue lets a
            # newcomer take a connection just returned before the waiter woken for it runs, and
            # the robbed waiter queues again at the back: with one writer, some requests waited
            # 7-17 s while the median took 60 ms (bench/RESULTS.md).
            self._write_turns: asyncio.Semaphore | None = asyncio.Semaphore(1)
            self._read_turns: asyncio.Semaphore | None = asyncio.Semaphore(2)
        else:
            self._writer = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                connect_args={"options": _all_accounts_options(url)},
            )
            self._reader = self._writer
            self._write_turns = self._read_turns = None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def write(self, *, every_account: bool = False) -> AsyncIterator[AsyncConnection]:
        """A write transaction; in a customer's scope it sees that account's rows only, unless
        `every_account` (state the process keeps for all accounts at once, e.g. the fraud
        guard's shared counters, synced from whichever request comes by)."""
        hooks: list[Callable[[], None]] = []
        async with _turn(self._write_turns), self._writer.begin() as connection:
            if not every_account:
                await self._narrow(connection)
            _after_commit[connection] = hooks
            last: list[BeforeCommit] = []
            _before_commit[connection] = last
            try:
                yield connection
                while last:
                    await last.pop(0)(connection)
            finally:
                _after_commit.pop(connection, None)
                _before_commit.pop(connection, None)
        for hook in hooks:
            hook()

    @asynccontextmanager
    async def read(self, *, every_account: bool = False) -> AsyncIterator[AsyncConnection]:
        async with _turn(self._read_turns), self._reader.begin() as connection:
            if not every_account:
                await self._narrow(connection)
            yield connection

    async def _narrow(self, connection: AsyncConnection) -> None:
        """Scope the transaction to the current task's account (PostgreSQL; see `tenancy`)."""
        account = tenancy.current()
        if account is not None and not self.is_sqlite:
            await connection.execute(_NARROW, {"account": account})

    async def bypasses_row_security(self) -> bool:
        """Whether this connection's role passes every row-level security policy (PostgreSQL:
        a superuser or BYPASSRLS role), which takes the second wall away (ADR 0020)."""
        if self.is_sqlite:
            return False
        async with self.read() as connection:
            return bool(
                await connection.scalar(
                    sa.text(
                        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
                    )
                )
            )

    async def ping(self) -> bool:
        try:
            async with self.read() as connection:
                await connection.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        """Close the pools. A connection still in use belongs to a task that outlived its
        process's stop: said here — logged for the operator, and a warning that the tests'
        filter turns into an error — not when the garbage collector finds it later, in
        whatever test or code runs then."""
        pools = {self._writer.pool, self._reader.pool}
        in_use = sum(p.checkedout() for p in pools if isinstance(p, sa.pool.QueuePool))
        if in_use:
            current = asyncio.current_task()
            # by coroutine, counted: a worker may have thousands of the same send in flight
            running = dict(
                Counter(
                    t.get_coro().__qualname__  # type: ignore[union-attr]
                    for t in asyncio.all_tasks()
                    if t is not current and not t.done()
                ).most_common(20)
            )
            log.warning(
                "database connections still in use at shutdown", count=in_use, tasks=running
            )
            warnings.warn(
                f"{in_use} database connection(s) still in use when the pools were closed",
                ConnectionsInUseWarning,
                stacklevel=2,
            )
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()
