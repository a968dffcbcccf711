"""An HTTP/1.1 load generator on raw asyncio: keep-alive connections, bounded in count and time.

httpx spends ~300 µs of CPU per request, which on a 2-core machine shared with the server would
measure the client; this one parses just the status line and Content-Length (what uvicorn sends).
Times are `time.monotonic()`, the system-wide clock the SMSC peer process reads too.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlencode

CONNECT_TIMEOUT_S = 5.0


class HttpError(Exception):
    """The server closed the connection or sent something this client does not read."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes


def build_request(
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> bytes:
    """The raw bytes of one request (Host is fixed: the server does not look at it)."""
    target = f"{path}?{urlencode(query)}" if query else path
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(cls, host, port), CONNECT_TIMEOUT_S
        )
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._parse()

    def _parse(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._waiter is None or self._waiter.done():
            return
        head = bytes(self._buffer[:end]).lower()
        marker = head.find(b"\r\ncontent-length:")
        if marker < 0:
            self._waiter.set_exception(HttpError("response without Content-Length"))
            return
        stop = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17 : stop if stop > 0 else None])
        total = end + 4 + length
        if len(self._buffer) < total:
            return
        response = Response(int(head[9:12]), bytes(self._buffer[end + 4 : total]))
        del self._buffer[:total]
        self._waiter.set_result(response)

    async def request(self, data: bytes) -> Response:
        if self.closed or self._transport is None:
            raise HttpError("connection is closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def fetch(host: str, port: int, data: bytes, timeout_s: float = 30.0) -> Response:
    """One request on its own connection."""
    connection = await HttpConnection.open(host, port)
    try:
        return await asyncio.wait_for(connection.request(data), timeout_s)
    finally:
        connection.close()


@dataclass(slots=True)
class LoadResult:
    """Per request: (index, sent at, answered at) for every answer; statuses counted."""

    began: float
    ended: float = 0.0
    timings: list[tuple[int, float, float]] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    bodies: dict[int, bytes] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        return max(1e-9, self.ended - self.began)

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def errors(self) -> int:
        return sum(self.failures.values()) + sum(
            n for status, n in self.statuses.items() if not 200 <= status < 300
        )


RequestFactory = Callable[[int], bytes]


async def closed_loop(
    host: str,
    port: int,
    make_request: RequestFactory,
    *,
    total: int,
    concurrency: int,
    time_limit_s: float,
    request_timeout_s: float = 30.0,
    keep_bodies: bool = False,
    first_index: int = 0,
) -> LoadResult:
    """`concurrency` connections send requests `first_index …` back to back until `total` are
    answered or `time_limit_s` has passed, whichever comes first."""
    indexes = itertools.count(first_index)
    last = first_index + total
    result = LoadResult(began=time.monotonic())
    deadline = result.began + time_limit_s

    async def worker() -> None:
        connection = await HttpConnection.open(host, port)
        try:
            while time.monotonic() < deadline:
                index = next(indexes)
                if index >= last:
                    return
                data = make_request(index)
                sent = time.monotonic()
                try:
                    response = await asyncio.wait_for(connection.request(data), request_timeout_s)
                except (HttpError, TimeoutError) as exc:
                    result.failures[type(exc).__name__] += 1
                    connection.close()
                    connection = await HttpConnection.open(host, port)
                    continue
                result.timings.append((index, sent, time.monotonic()))
                result.statuses[response.status] += 1
                if keep_bodies or not 200 <= response.status < 300:
                    result.bodies[index] = response.body
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.ended = time.monotonic()
    return result


async def paced(
    host: str,
    port: int,
    make_request: RequestFactory,
    *,
    rate_per_s: float,
    total: int,
    time_limit_s: float,
    max_connections: int = 64,
    request_timeout_s: float = 30.0,
    first_index: int = 0,
) -> LoadResult:
    """Open loop: request `i` is due at `began + i / rate_per_s`, whatever the answers do.

    Sent times are the due times, so a stalled server shows as latency rather than as a slower
    schedule (no coordinated omission). Bodies are kept: callers read ids from them.
    """
    result = LoadResult(began=time.monotonic())
    deadline = result.began + time_limit_s
    idle: list[HttpConnection] = []
    opened = 0
    pending: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(max_connections)

    async def one(index: int, due: float) -> None:
        nonlocal opened
        async with gate:
            connection = idle.pop() if idle else None
            if connection is None or connection.closed:
                connection = await HttpConnection.open(host, port)
                opened += 1
            try:
                response = await asyncio.wait_for(
                    connection.request(make_request(index)), request_timeout_s
                )
            except (HttpError, TimeoutError) as exc:
                result.failures[type(exc).__name__] += 1
                connection.close()
                return
            result.timings.append((index, due, time.monotonic()))
            result.statuses[response.status] += 1
            result.bodies[index] = response.body
            idle.append(connection)

    for offset in range(total):
        due = result.began + offset / rate_per_s
        if due >= deadline:
            break
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(first_index + offset, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(set(pending), timeout=request_timeout_s)
    for task in pending:
        task.cancel()
    for connection in idle:
        connection.close()
    result.ended = time.monotonic()
    return result
