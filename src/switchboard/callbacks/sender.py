"""One signed callback POST to the address the SSRF policy checked; network faults become results.

Pinning: every attempt asks the policy about its URL; a connection is opened only to an address
that answer holds, with the URL's host name for Host, SNI and the certificate check. Nothing
below the policy ever resolves a name. Connections are kept alive per (scheme, host, port) and
reused only while the attempt's own answer still lists their address, so a resolver that turns
a name private refuses the attempt before anything is written.

HTTP/1.1 is spoken on asyncio streams: the request (one POST with a Content-Length body) is
built here, the answer is read by h11 (status, headers, framing, at most 64 KiB of body). A
general client (httpcore over anyio) cost about 1 ms of CPU per POST on the benchmark machine,
more than the rest of a delivery — most of it anyio's machinery, not h11's parsing.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import certifi
import h11

from switchboard.callbacks.secrets import signature_header, timestamp_seconds
from switchboard.callbacks.ssrf import (
    AddressPolicy,
    Destination,
    DestinationRefusedError,
    HostResolutionError,
    IPAddress,
)
from switchboard.clock import Clock, SystemClock
from switchboard.config import WebhookSettings

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Switchboard"
_DETAIL_CHARS = 200
_KEEPALIVE_S = 30.0
_MAX_HEAD_BYTES = 64 * 1024  # status line and headers of an answer
_READ_BYTES = 64 * 1024


class AttemptError(StrEnum):
    REFUSED = "refused"  # URL or address outside the SSRF policy; nothing was sent
    RESOLVE = "resolve"  # the host name has no address
    CONNECT = "connect"  # TCP or TLS could not be established
    TIMEOUT = "timeout"  # connect timeout or total timeout
    PROTOCOL = "protocol"  # the connection broke, or the answer was not HTTP


@dataclass(frozen=True)
class Attempt:
    """The result of one POST: a status code, or an error kind when there was no answer.

    `detail` is short text safe to show the tenant: the error, or the start of a non-2xx body.
    `response_bytes` counts the body bytes read, never more than 64 KiB.
    """

    started_at: datetime
    webhook_timestamp: int
    latency_ms: int
    status_code: int | None = None
    retry_after: str | None = None
    error: AttemptError | None = None
    detail: str = ""
    response_bytes: int = 0
    body: bytes = b""  # the answer's body, at most 64 KiB (a partner's per-record verdicts)


class Link(Protocol):
    """A byte stream to one checked address (TCP, or TLS over it)."""

    def write(self, data: bytes) -> None:
        """Queue `data`; `drain` waits until it may continue."""
        ...

    async def drain(self) -> None: ...

    async def read(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` that arrived; b"" once the peer has closed."""
        ...

    async def readuntil(self, separator: bytes) -> bytes:
        """Bytes up to and including `separator`; raises asyncio.IncompleteReadError at the
        end of the stream and asyncio.LimitOverrunError past 64 KiB."""
        ...

    def at_eof(self) -> bool: ...

    def close(self) -> None: ...


class Network(Protocol):
    """Opens links. The sender only ever asks for an address the policy has just checked."""

    async def connect(
        self,
        address: IPAddress,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        server_name: str,
    ) -> Link:
        """Raises OSError (ssl.SSLError included) when no link can be made."""
        ...


class _StreamLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.write = writer.write
        self.drain = writer.drain
        self.read = reader.read
        self.readuntil = reader.readuntil
        self.at_eof = reader.at_eof

    def close(self) -> None:
        self._writer.close()


class TcpNetwork:
    """The real network: asyncio streams, TLS with the URL's host name for SNI and checks."""

    async def connect(
        self,
        address: IPAddress,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        server_name: str,
    ) -> Link:
        reader, writer = await asyncio.open_connection(
            str(address),
            port,
            ssl=ssl_context,
            server_hostname=server_name if ssl_context is not None else None,
            limit=_MAX_HEAD_BYTES,
        )
        return _StreamLink(reader, writer)


class _ProtocolError(Exception):
    """The answer is not HTTP/1.x, or the connection broke in the middle of it."""


class _ConnectTimeoutError(Exception):
    pass


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    reusable: bool

    def summary(self) -> str:
        if 200 <= self.status < 300:
            return ""
        if 300 <= self.status < 400:
            location = _header(self.headers, b"location") or "nowhere"
            return _shorten(f"redirect to {location} not followed")
        return _shorten(self.body.decode("utf-8", "replace"))


@dataclass
class _Idle:
    link: Link
    address: IPAddress
    since: float


class _Gate:
    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0


class WebhookSender:
    """POSTs signed callbacks; at most `max_concurrency_per_endpoint` at a time per URL (WO-9).

    Close it with `aclose()` (or use it as an async context manager) to drop kept connections.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        clock: Clock | None = None,
        connect_timeout_s: float = 5.0,
        total_timeout_s: float = 15.0,
        max_concurrency_per_endpoint: int = 4,
        ssl_context: ssl.SSLContext | None = None,
        network: Network | None = None,
        max_connections: int = 100,
    ) -> None:
        self._policy = policy
        self._clock = clock or SystemClock()
        self._connect_timeout_s = connect_timeout_s
        self._total_timeout_s = total_timeout_s
        self._concurrency = max_concurrency_per_endpoint
        self._gates: dict[str, _Gate] = {}
        self._ssl_context = ssl_context
        self._network = network or TcpNetwork()
        self._max_idle = max_connections
        self._idle: dict[tuple[str, str, int], deque[_Idle]] = {}
        self._idle_count = 0

    @classmethod
    def from_settings(
        cls, settings: WebhookSettings, policy: AddressPolicy, *, clock: Clock | None = None
    ) -> WebhookSender:
        return cls(
            policy,
            clock=clock,
            connect_timeout_s=settings.connect_timeout_s,
            total_timeout_s=settings.total_timeout_s,
            max_concurrency_per_endpoint=settings.max_concurrency_per_endpoint,
        )

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for kept in self._idle.values():
            for idle in kept:
                idle.link.close()
        self._idle.clear()
        self._idle_count = 0

    async def send(
        self, url: str, body: bytes, *, webhook_id: str, signing_secrets: Sequence[str]
    ) -> Attempt:
        """POST `body` to `url`, signed with every secret in `signing_secrets` (none: unsigned,
        without the webhook-* headers, for partners that define their own callbacks).

        `webhook_id` must be the same on every retry of one event. Never follows redirects and
        never raises for network errors or policy refusals: those come back as an Attempt.
        Raises ValueError for a malformed secret or id, before anything is sent.
        """
        gate = self._gates.get(url)
        if gate is None:
            gate = self._gates[url] = _Gate(self._concurrency)
        gate.users += 1
        try:
            async with gate.semaphore:
                return await self._attempt(url, body, webhook_id, signing_secrets)
        finally:
            gate.users -= 1
            if gate.users == 0:
                del self._gates[url]

    async def _attempt(
        self, url: str, body: bytes, webhook_id: str, signing_secrets: Sequence[str]
    ) -> Attempt:
        started_at = self._clock.now()
        timestamp = timestamp_seconds(started_at)
        signed = b""
        if signing_secrets:
            signature = signature_header(signing_secrets, webhook_id, timestamp, body)
            signed = b"webhook-id: %s\r\nwebhook-timestamp: %d\r\nwebhook-signature: %s\r\n" % (
                webhook_id.encode("ascii"),
                timestamp,
                signature.encode("ascii"),
            )
        began = time.monotonic()

        def failed(error: AttemptError, detail: str) -> Attempt:
            return Attempt(
                started_at=started_at,
                webhook_timestamp=timestamp,
                latency_ms=_elapsed_ms(began),
                error=error,
                detail=_shorten(detail),
            )

        try:
            async with asyncio.timeout(self._total_timeout_s):
                destination = await self._policy.check(url)
                request = b"".join(
                    (
                        b"POST %s HTTP/1.1\r\nHost: %s\r\n"
                        % (destination.target.encode("ascii"), destination.host_header.encode()),
                        b"Content-Type: application/json\r\nUser-Agent: %s\r\n"
                        % USER_AGENT.encode("ascii"),
                        signed,
                        b"Content-Length: %d\r\n\r\n" % len(body),
                        body,
                    )
                )
                answer = await self._exchange(destination, request)
        except DestinationRefusedError as exc:
            return failed(AttemptError.REFUSED, exc.reason)
        except HostResolutionError as exc:
            return failed(AttemptError.RESOLVE, exc.reason)
        except _ConnectTimeoutError:
            return failed(AttemptError.TIMEOUT, f"connect took over {self._connect_timeout_s} s")
        except TimeoutError:
            return failed(AttemptError.TIMEOUT, f"no answer within {self._total_timeout_s} s")
        except _ConnectError as exc:
            return failed(AttemptError.CONNECT, str(exc.__cause__ or exc) or "connect failed")
        except (_ProtocolError, OSError, asyncio.IncompleteReadError) as exc:
            return failed(AttemptError.PROTOCOL, str(exc) or type(exc).__name__)
        return Attempt(
            started_at=started_at,
            webhook_timestamp=timestamp,
            latency_ms=_elapsed_ms(began),
            status_code=answer.status,
            retry_after=_header(answer.headers, b"retry-after"),
            detail=answer.summary(),
            response_bytes=len(answer.body),
            body=answer.body,
        )

    async def _exchange(self, destination: Destination, request: bytes) -> _Answer:
        """Write the request on a kept connection or a new one and read the answer.

        A kept connection the receiver closed meanwhile fails before any answer byte: the
        request is then written once more on a new connection (receivers dedupe on the id).
        """
        key = (destination.scheme, destination.host, destination.port)
        kept = self._take_idle(key, destination.addresses)
        if kept is not None:
            link, address = kept
            try:
                answer = await _round_trip(link, request)
            except _StaleConnectionError:
                link.close()
            except BaseException:
                link.close()
                raise
            else:
                self._keep_or_close(key, link, address, answer.reusable)
                return answer
        link, address = await self._connect(destination)
        try:
            answer = await _round_trip(link, request)
        except _StaleConnectionError as exc:
            link.close()
            raise _ProtocolError("the connection closed before an answer") from exc
        except BaseException:
            link.close()
            raise
        self._keep_or_close(key, link, address, answer.reusable)
        return answer

    async def _connect(self, destination: Destination) -> tuple[Link, IPAddress]:
        """A new link to the first checked address that accepts one."""
        context = None
        if destination.scheme == "https":
            context = self._ssl_context or _default_ssl_context()
        failure: BaseException | None = None
        for address in destination.addresses:
            try:
                async with asyncio.timeout(self._connect_timeout_s) as deadline:
                    link = await self._network.connect(
                        address, destination.port, ssl_context=context, server_name=destination.host
                    )
                return link, address
            except TimeoutError as exc:
                if not deadline.expired():
                    raise  # the total timeout, not this connect's
                failure = _ConnectTimeoutError()
                failure.__cause__ = exc
            except OSError as exc:
                failure = exc
        if isinstance(failure, _ConnectTimeoutError):
            raise failure
        raise _ConnectError() from failure

    def _take_idle(
        self, key: tuple[str, str, int], addresses: tuple[IPAddress, ...]
    ) -> tuple[Link, IPAddress] | None:
        kept = self._idle.get(key)
        now = time.monotonic()
        while kept:
            idle = kept.pop()  # the most recently used is the most likely to be alive
            self._idle_count -= 1
            if (
                now - idle.since < _KEEPALIVE_S
                and not idle.link.at_eof()
                and (idle.address in addresses)
            ):
                if not kept:
                    del self._idle[key]
                return idle.link, idle.address
            idle.link.close()
        if kept is not None:
            del self._idle[key]
        return None

    def _keep_or_close(
        self, key: tuple[str, str, int], link: Link, address: IPAddress, reusable: bool
    ) -> None:
        if not reusable:
            link.close()
            return
        kept = self._idle.setdefault(key, deque())
        kept.append(_Idle(link, address, time.monotonic()))
        self._idle_count += 1
        if self._idle_count > self._max_idle:  # drop the oldest connection of this endpoint
            kept.popleft().link.close()
            self._idle_count -= 1
        if not kept:
            del self._idle[key]


class _ConnectError(Exception):
    pass


class _StaleConnectionError(Exception):
    """A kept connection ended before any byte of the answer."""


# Each connection's HTTP/1.1 state, for as long as the connection is kept.
_parsers: weakref.WeakKeyDictionary[Link, h11.Connection] = weakref.WeakKeyDictionary()


async def _round_trip(link: Link, request: bytes) -> _Answer:
    """Write the request, read its answer with h11 (framing, chunks, interim 1xx answers)."""
    parser = _parsers.get(link)
    if parser is None:  # a new connection
        parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD_BYTES)
        _parsers[link] = parser
    else:  # a kept one: its parser may already hold bytes of the next answer
        parser.start_next_cycle()
    # The request's bytes are ours (built once per delivery); h11 only needs to know one went
    # out, and that it was a POST, to frame the answer.
    parser.send(h11.Request(method="POST", target="/", headers=[("Host", "callback")]))
    parser.send(h11.EndOfMessage())
    link.write(request)
    try:
        await link.drain()
    except (ConnectionResetError, BrokenPipeError) as exc:
        raise _StaleConnectionError() from exc
    status = 0
    headers: list[tuple[bytes, bytes]] = []
    body = bytearray()
    received_any = False
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            raise _ProtocolError(f"the answer is not valid HTTP/1.x: {exc}") from None
        if event is h11.NEED_DATA:
            try:
                data = await link.read(_READ_BYTES)
            except ConnectionResetError as exc:
                if not received_any:
                    raise _StaleConnectionError() from exc
                raise _ProtocolError("the connection broke inside the answer") from exc
            if not data and not received_any:
                raise _StaleConnectionError()  # a kept connection the receiver closed
            received_any = True
            parser.receive_data(data)
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = [(name.lower(), value) for name, value in event.headers]
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_RESPONSE_BYTES:  # read no further: this connection is spent
                return _Answer(status, headers, bytes(body[:MAX_RESPONSE_BYTES]), False)
        elif isinstance(event, h11.EndOfMessage):
            reusable = parser.our_state is h11.DONE and parser.their_state is h11.DONE
            return _Answer(status, headers, bytes(body), reusable)
        elif isinstance(event, h11.ConnectionClosed):
            raise _ProtocolError("the answer ended before it was complete")
        # h11.InformationalResponse (100 Continue …) precedes the real answer: read on


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """One context for the process (loading the CA bundle is slow): certifi's CAs, as httpx."""
    return ssl.create_default_context(cafile=certifi.where())


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return _shorten(value.decode("latin-1"))
    return None


def _shorten(text: str) -> str:
    return " ".join(text.split())[:_DETAIL_CHARS]


def _elapsed_ms(began: float) -> int:
    return round((time.monotonic() - began) * 1000)
