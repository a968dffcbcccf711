"""A customer's callback receiver for tests: plain asyncio HTTP/1.1 on 127.0.0.1, scripted answers.

Each request is answered by a handler, so a test can redirect, stall, trickle or stream without
end; the receiver counts TCP connections too, which proves that a refused URL was never
connected to. Every receiver started through `Receivers` is stopped by `stop_all()`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

MAX_REQUESTS_PER_CONNECTION = 100


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[ReceivedRequest, asyncio.StreamWriter], Awaitable[None]]


async def respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
) -> None:
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


def answer(status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()) -> Handler:
    """Every request gets the same answer."""

    async def handler(request: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        await respond(writer, status, body, headers)

    return handler


def answers(statuses: Iterable[int], then: int = 200) -> Handler:
    """The n-th request gets the n-th status, and every later one `then`: a receiver that fails
    for a while and recovers."""
    pending = list(statuses)

    async def handler(request: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        await respond(writer, pending.pop(0) if pending else then)

    return handler


def stall(seconds: float) -> Handler:
    """Read the request, then say nothing for `seconds` (a receiver slower than any timeout)."""

    async def handler(request: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(seconds)

    return handler


async def read_request(reader: asyncio.StreamReader) -> ReceivedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    request_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    method, target, _ = request_line.split(" ")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return ReceivedRequest(method, target, headers, body)


class Receiver:
    """An HTTP/1.1 server on 127.0.0.1 at a free port; records connections and requests."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler  # may be swapped while running
        self._ssl_context = ssl_context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._arrived = asyncio.Event()
        self.port = 0
        self.connections = 0
        self.requests: list[ReceivedRequest] = []

    def url(self, path: str = "/hook", *, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self._ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def wait_for_requests(self, count: int, timeout_s: float = 10.0) -> list[ReceivedRequest]:
        """The first `count` requests, once they have arrived; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests[:count]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                request = await read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                self._arrived.set()
                await self.handler(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        except asyncio.CancelledError:
            # stop() cancels handlers; ending quietly keeps asyncio's stream callback (3.11)
            # from logging the cancellation as an error.
            return
        finally:
            writer.close()
            self._tasks.discard(task)


class Receivers:
    """Starts receivers and stops every one of them at the end of a test."""

    def __init__(self) -> None:
        self._started: list[Receiver] = []

    async def start(
        self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None
    ) -> Receiver:
        receiver = Receiver(handler, ssl_context)
        await receiver.start()
        self._started.append(receiver)
        return receiver

    async def stop_all(self) -> None:
        for receiver in self._started:
            await receiver.stop()
