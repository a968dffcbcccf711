"""The customer's callback endpoint for benchmarks: counts delivery reports and when they came.

A raw asyncio HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length bodies only) that
answers 200 at once and records `messageId → arrival` (monotonic) for each delivery body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import cast

_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_TOO_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Connection(asyncio.Protocol):
    def __init__(self, receiver: CallbackReceiver) -> None:
        self._receiver = receiver
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).lower()
            marker = head.find(b"\r\ncontent-length:")
            if marker < 0:
                self._reject()
                return
            stop = head.find(b"\r\n", marker + 2)
            length = int(head[marker + 17 : stop if stop > 0 else None])
            total = end + 4 + length
            if len(self._buffer) < total:
                return
            body = bytes(self._buffer[end + 4 : total])
            del self._buffer[:total]
            self._receiver.received(body)
            assert self._transport is not None
            self._transport.write(_ANSWER)

    def _reject(self) -> None:
        assert self._transport is not None
        self._transport.write(_TOO_BAD)
        self._transport.close()


class CallbackReceiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}  # messageId → first arrival
        self.statuses: dict[str, int] = {}
        self.count = 0
        self.duplicates = 0
        self.first = 0.0
        self.last = 0.0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/delivery"

    def received(self, body: bytes) -> None:
        now = time.monotonic()
        try:
            document = json.loads(body)
        except ValueError:
            return
        message_id = document.get("messageId") if isinstance(document, dict) else None
        if not isinstance(message_id, str):
            return  # a verification event, not a delivery report
        self.count += 1
        self.first = self.first or now
        self.last = now
        status = str(document.get("status"))
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if message_id in self.arrivals:
            self.duplicates += 1
        else:
            self.arrivals[message_id] = now

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


# -- the callback dispatcher alone: `python -m bench.callbacks --count 5000 --db sqlite` ------


async def drain(count: int, database_url: str, settings: dict[str, object]) -> dict[str, float]:
    """Queue `count` delivery rows for one endpoint (this receiver), run only the webhook
    dispatcher, and time it until every body has arrived: wall seconds and this process's
    CPU seconds (dispatcher, database calls and this receiver together)."""
    import uuid
    from datetime import UTC, datetime

    from switchboard.bootstrap import build_container
    from switchboard.callbacks.secrets import generate_secret
    from switchboard.config import load_settings
    from switchboard.domain.callbacks import delivery_payload, encode_payload
    from switchboard.storage.sql.tables import accounts, webhook_deliveries

    receiver = CallbackReceiver()
    await receiver.start()
    config = load_settings(
        None,
        database_url=database_url,
        token_signing_key="k" * 64,
        otp_pepper="p" * 64,
        webhooks={"allow_networks": ["127.0.0.1/32"], **settings},
    )
    built = build_container(config)
    await built.start(run_workers=False)
    try:
        await built.accounts.create_customer(
            email="bench@example.com", password="long enough", customer_id="BENCH"
        )
        now = datetime.now(UTC)
        rows = []
        for _ in range(count):
            message_id = str(uuid.uuid4())
            payload = delivery_payload(
                message_id=message_id, status="DELIVRD", country_code="91",
                national_number="9810000000", submitted_at=now, done_at=now,
            )  # fmt: skip
            rows.append(
                {
                    "id": "msg_" + uuid.uuid4().hex, "account_id": "BENCH",
                    "event_type": "message.status", "message_id": message_id,
                    "url": receiver.url, "payload": encode_payload(payload).decode("ascii"),
                    "status": "PENDING", "next_attempt_at": now, "created_at": now,
                }
            )  # fmt: skip
        async with built.database.write() as connection:
            await connection.execute(
                accounts.update()
                .where(accounts.c.id == "BENCH")
                .values(callback_url=receiver.url, callback_secret=generate_secret())
            )
            await connection.execute(webhook_deliveries.insert(), rows)
        cpu, began = time.process_time(), time.monotonic()
        task = asyncio.create_task(built.webhooks.run())
        while receiver.count < count and time.monotonic() - began < 300:
            await asyncio.sleep(0.01)
        elapsed, used = time.monotonic() - began, time.process_time() - cpu
        await built.webhooks.stop(5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await built.stop()
        await receiver.stop()
    return {
        "received": receiver.count,
        "duplicates": receiver.duplicates,
        "seconds": elapsed,
        "per_s": receiver.count / elapsed,
        "cpu_ms_per_callback": 1000 * used / max(receiver.count, 1),
    }


def main() -> None:
    import argparse
    import tempfile
    from pathlib import Path

    import uvloop

    parser = argparse.ArgumentParser(description="The callback dispatcher alone, in-process.")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="a [webhooks] setting, e.g. max_concurrency_per_endpoint=16")  # fmt: skip
    options = parser.parse_args()
    settings = {k: json.loads(v) for k, v in (item.split("=", 1) for item in options.set)}
    with tempfile.TemporaryDirectory() as directory:
        if options.db == "sqlite":
            url = f"sqlite:///{Path(directory) / 'bench.db'}"
            result = uvloop.run(drain(options.count, url, settings))
        else:
            result = uvloop.run(_on_postgres(options.count, settings))
    print(" | ".join(f"{k} {v:,.2f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in result.items()))  # fmt: skip


async def _on_postgres(count: int, settings: dict[str, object]) -> dict[str, float]:
    import secrets as random_names

    import psycopg

    from switchboard.storage.sql.migrate import upgrade

    name = f"bench_{random_names.token_hex(4)}"
    admin = "postgresql://postgres@127.0.0.1:5432/test"
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as connection:
        await connection.execute(f"CREATE DATABASE {name}")
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        await asyncio.to_thread(upgrade, url)
        return await drain(count, url, settings)
    finally:
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as connection:
            await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
