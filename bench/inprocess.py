"""One service call in-process: its rate, each SQL statement's time, a pyinstrument tree.

    python -m bench.inprocess accept|validate --db sqlite|postgres [--count 500] [--no-tree] [--asgi]

Sequential calls (one at a time), so the rate is the inverse of one call's latency: service,
SQLAlchemy and database work, no contention. With --asgi each call is a whole request to the
ASGI app (routing, token check, parameters, envelope, access log) with no socket and no HTTP
parser: the difference to the plain run is the web stack's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.deployment import PASSWORD, BenchDatabase
from switchboard.bootstrap import Container, build_container
from switchboard.config import load_settings
from switchboard.domain.accounts import Account
from switchboard.services.verification import SendRequest

CODE = "123456"
BASE = 9_800_000_000


@contextlib.asynccontextmanager
async def _container(db: str, test_numbers: dict[str, str]) -> AsyncIterator[Container]:
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-inprocess-"))
    database = BenchDatabase(db, workdir)
    database.create()
    try:
        overrides: dict[str, Any] = {
            "database_url": database.url,
            "sandbox": {"test_numbers": test_numbers},
        }
        if db == "postgres":
            from switchboard.storage.sql import migrate

            overrides["token_signing_key"] = secrets.token_hex(64)
            overrides["otp_pepper"] = secrets.token_hex(64)
            migrate.upgrade(database.url)
        container = build_container(load_settings(None, **overrides))
        await container.start(run_workers=False)
        try:
            yield container
        finally:
            await container.stop()
    finally:
        database.drop()
        shutil.rmtree(workdir, ignore_errors=True)


def _time_statements(container: Container) -> dict[str, list[float]]:
    """statement (shortened) → [count, seconds], from SQLAlchemy's cursor events."""
    stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    engines = {container.database._writer.sync_engine, container.database._reader.sync_engine}
    for engine in engines:

        @event.listens_for(engine, "before_cursor_execute")
        def _before(connection: Any, *_: Any) -> None:
            connection.info["bench_t0"] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def _after(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
            entry = stats[" ".join(statement.split())[:100]]
            entry[0] += 1
            entry[1] += time.perf_counter() - connection.info.pop("bench_t0", time.perf_counter())

    return stats


async def _account(container: Container) -> Account:
    await container.accounts.create_customer(
        email="bench@example.com", password=PASSWORD, customer_id="C-BENCH", name="B"
    )
    return await container.accounts.update("C-BENCH", settings={"daily_quota": 100_000_000})


def _send(index: int) -> SendRequest:
    return SendRequest(country_code="91", mobile_number=str(BASE + index), flow_type="SMS")


class _Asgi:
    """Calls the app the way uvicorn would, minus the socket: one request, whole body."""

    def __init__(self, container: Container, token: str) -> None:
        from switchboard.api.app import create_app

        self._app = create_app(container, manage_lifecycle=False)
        self._headers = [(b"authtoken", token.encode()), (b"host", b"bench")]

    async def call(self, method: str, path: str, query: str) -> int:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "", "headers": self._headers,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080), "state": {},
        }  # fmt: skip
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, send)
        if status != 200:
            raise RuntimeError(f"{method} {path}?{query}: {status} {b''.join(chunks)[:300]!r}")
        return status


async def measure(scenario: str, db: str, count: int, tree: bool, asgi: bool = False) -> None:
    numbers = {f"+91{BASE + i}": CODE for i in range(count)} if scenario == "validate" else {}
    async with _container(db, numbers) as container:
        account = await _account(container)
        ids: list[int] = []
        if scenario == "validate":
            for index in range(count):
                started = await container.verification.start(account, _send(index))
                ids.append(started.verification.id)
        http: _Asgi | None = None
        if asgi:
            http = _Asgi(container, container.tokens.issue(account))
        stats = _time_statements(container)
        profiler: Any = None
        if tree:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="enabled")
            profiler.start()
        began = time.perf_counter()
        for index in range(count):
            if http is not None and scenario == "accept":
                query = f"countryCode=91&mobileNumber={BASE + index}&flowType=SMS"
                await http.call("POST", "/verification/v3/send", query)
            elif http is not None:
                query = f"verificationId={ids[index]}&code={CODE}"
                await http.call("GET", "/verification/v3/validateOtp", query)
            elif scenario == "accept":
                await container.verification.start(account, _send(index))
            else:
                await container.verification.check(account, str(ids[index]), CODE, None)
        elapsed = time.perf_counter() - began
        if profiler is not None:
            profiler.stop()
    kind = " (whole requests to the ASGI app)" if asgi else ""
    print(
        f"{scenario} {db}{kind}: {count / elapsed:,.0f} calls/s, {elapsed / count * 1e3:.2f} ms each"
    )
    print("SQL per call (time includes the driver):")
    for statement, (n, seconds) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
        print(f"  {seconds / count * 1e3:6.3f} ms  ×{n / count:4.1f}  {statement}")
    if profiler is not None:
        print(profiler.output_text(unicode=True, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["accept", "validate"])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--no-tree", action="store_true", help="no pyinstrument (its overhead)")
    parser.add_argument("--asgi", action="store_true", help="whole requests to the ASGI app")
    arguments = parser.parse_args()
    if not 1 <= arguments.count <= 100_000:
        parser.error("--count must be 1-100000")
    asyncio.run(
        measure(
            arguments.scenario, arguments.db, arguments.count, not arguments.no_tree, arguments.asgi
        )
    )


if __name__ == "__main__":
    main()
