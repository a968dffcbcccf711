"""The customer's callback endpoint for benchmarks: counts delivery reports and when they came.

A raw asyncio HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length bodies only) that
answers 200 at once and records `messageId → arrival` (monotonic) for each delivery body.
"""

from __future__ import annotations

import asyncio
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
