"""The loopback fault proxy: pass-through, reset, stall, latency, refusal, loopback only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from switchboard.testing.faultproxy import FaultProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with FaultProxy("127.0.0.1", port) as fault_proxy:
        yield fault_proxy
    server.close()
    await server.wait_closed()


async def _roundtrip(port: int, payload: bytes, timeout_s: float = 1.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout_s)
    finally:
        writer.close()


async def test_passes_bytes_through(proxy: FaultProxy) -> None:
    assert await _roundtrip(proxy.port, b"hello") == b"hello"


async def test_stall_holds_traffic_until_resume(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    proxy.stall()
    writer.write(b"ping")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.2)
    proxy.resume()
    assert await asyncio.wait_for(reader.readexactly(4), 1.0) == b"ping"
    writer.close()


async def test_latency_delays_each_chunk(proxy: FaultProxy) -> None:
    proxy.latency_s = 0.1
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await _roundtrip(proxy.port, b"slow") == b"slow"
    assert loop.time() - started >= 0.2  # one delay each way


async def test_reset_aborts_open_connections(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"x")
    await writer.drain()
    await reader.readexactly(1)
    proxy.reset()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 1.0)
    writer.close()
    assert proxy.resets == 1
    assert await _roundtrip(proxy.port, b"again") == b"again"  # new connections still work


async def test_refuse_closes_new_connections(proxy: FaultProxy) -> None:
    proxy.refuse = True
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await _roundtrip(proxy.port, b"nope")


def test_refuses_anything_but_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("10.0.0.1", 2775)
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("127.0.0.1", 2775, listen_host="0.0.0.0")
