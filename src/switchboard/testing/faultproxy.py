"""A loopback TCP fault proxy for tests (toxiproxy-like): pass, reset, stall, slow, refuse.

proxy = FaultProxy("127.0.0.1", smsc_port)
await proxy.start()            # clients connect to 127.0.0.1:proxy.port
proxy.reset()                  # abort every open connection (RST) mid-stream
proxy.stall()                  # stop forwarding in both directions (held, not dropped)
proxy.resume()
proxy.latency_s = 0.2          # delay every chunk
proxy.refuse = True            # close new connections at once
await proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from dataclasses import dataclass, field

_CHUNK = 64 * 1024


def _require_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"the fault proxy only runs on loopback, not {host!r}")


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            transport = writer.transport
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER 0 makes close() send RST: the peer sees "connection reset".
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        _require_loopback(upstream_host)
        _require_loopback(listen_host)
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self._listen_port = listen_port
        self.latency_s = 0.0
        self.refuse = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self.accepted = 0
        self.resets = 0

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("proxy not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._links)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host, self._listen_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.reset()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def reset(self) -> None:
        """Abort every open connection on both sides."""
        for link in list(self._links):
            link.abort()
            self.resets += 1
        self._links.clear()

    def stall(self) -> None:
        """Hold all traffic (connections stay open) until resume()."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refuse:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.upstream_port), 5.0
            )
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, link)),
            asyncio.create_task(self._pipe(up_reader, writer, link)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)

    async def _pipe(
        self, source: asyncio.StreamReader, target: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while True:
                chunk = await source.read(_CHUNK)
                if not chunk:
                    break
                await self._flowing.wait()
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                    await self._flowing.wait()
                target.write(chunk)
                await target.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side ended: end the other too, as a plain TCP path would.
            for writer in (link.client, link.upstream):
                writer.close()
