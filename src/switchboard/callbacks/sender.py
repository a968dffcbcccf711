"""One signed callback POST to the address the SSRF policy checked; network faults become results.

Pinning: the request keeps the URL's host name (so Host, SNI and certificate checks use it), and
`PinnedNetworkBackend` turns the TCP connect for that name into a connect to the checked address.
Nothing below the policy ever resolves a name, and the connection pool is keyed by host name.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import httpcore

from switchboard.callbacks.secrets import signature_header, timestamp_seconds
from switchboard.callbacks.ssrf import (
    AddressPolicy,
    Destination,
    DestinationRefusedError,
    HostResolutionError,
)
from switchboard.clock import Clock, SystemClock
from switchboard.config import WebhookSettings

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Switchboard"
_DETAIL_CHARS = 200
_KEEPALIVE_S = 30.0

# The checked destination of the request this task is sending; read by the network backend.
_pinned: ContextVar[Destination | None] = ContextVar("callback_destination", default=None)


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


class PinnedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Connects a host name to the addresses the policy checked for the current request, only."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore backend interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        destination = _pinned.get()
        if destination is None or (destination.host, destination.port) != (host, port):
            raise httpcore.ConnectError(f"no checked address for {host}:{port}")
        failure: Exception = httpcore.ConnectError("no address")
        for address in destination.addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore backend interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("callbacks never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def summary(self) -> str:
        if 200 <= self.status < 300:
            return ""
        if 300 <= self.status < 400:
            location = _header(self.headers, b"location") or "nowhere"
            return _shorten(f"redirect to {location} not followed")
        return _shorten(self.body.decode("utf-8", "replace"))


class _Gate:
    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0


class WebhookSender:
    """POSTs signed callbacks; at most `max_concurrency_per_endpoint` at a time per URL (WO-9).

    Close it with `aclose()` (or use it as an async context manager) to drop pooled connections.
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
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        max_connections: int = 100,
    ) -> None:
        self._policy = policy
        self._clock = clock or SystemClock()
        self._connect_timeout_s = connect_timeout_s
        self._total_timeout_s = total_timeout_s
        self._concurrency = max_concurrency_per_endpoint
        self._gates: dict[str, _Gate] = {}
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpcore.default_ssl_context(),
            max_connections=max_connections,
            keepalive_expiry=_KEEPALIVE_S,
            network_backend=PinnedNetworkBackend(network_backend),
        )

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
        await self._pool.aclose()

    async def send(
        self, url: str, body: bytes, *, webhook_id: str, signing_secrets: Sequence[str]
    ) -> Attempt:
        """POST `body` to `url`, signed with every secret in `signing_secrets`.

        `webhook_id` must be the same on every retry of one event. Never follows redirects and
        never raises for network errors or policy refusals: those come back as an Attempt.
        Raises ValueError for a malformed secret or id, before anything is sent.
        """
        async with self._gate(url):
            started_at = self._clock.now()
            timestamp = timestamp_seconds(started_at)
            headers = [
                (b"Content-Type", b"application/json"),
                (b"User-Agent", USER_AGENT.encode("ascii")),
                (b"webhook-id", webhook_id.encode("ascii")),
                (b"webhook-timestamp", str(timestamp).encode("ascii")),
                (
                    b"webhook-signature",
                    signature_header(signing_secrets, webhook_id, timestamp, body).encode("ascii"),
                ),
            ]
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
                    answer = await self._post(destination, headers, body)
            except DestinationRefusedError as exc:
                return failed(AttemptError.REFUSED, exc.reason)
            except HostResolutionError as exc:
                return failed(AttemptError.RESOLVE, exc.reason)
            except httpcore.ConnectTimeout:
                return failed(
                    AttemptError.TIMEOUT, f"connect took over {self._connect_timeout_s} s"
                )
            except (TimeoutError, httpcore.TimeoutException):
                return failed(AttemptError.TIMEOUT, f"no answer within {self._total_timeout_s} s")
            except httpcore.ConnectError as exc:
                return failed(AttemptError.CONNECT, str(exc) or type(exc).__name__)
            except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
                return failed(AttemptError.PROTOCOL, str(exc) or type(exc).__name__)
            return Attempt(
                started_at=started_at,
                webhook_timestamp=timestamp,
                latency_ms=_elapsed_ms(began),
                status_code=answer.status,
                retry_after=_header(answer.headers, b"retry-after"),
                detail=answer.summary(),
                response_bytes=len(answer.body),
            )

    async def _post(
        self, destination: Destination, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> _Answer:
        url = httpcore.URL(
            scheme=destination.scheme.encode("ascii"),
            host=destination.host.encode("ascii"),
            port=destination.port,
            target=destination.target.encode("ascii"),
        )
        timeouts = {
            "connect": self._connect_timeout_s,
            "read": self._total_timeout_s,
            "write": self._total_timeout_s,
            "pool": self._total_timeout_s,
        }
        token = _pinned.set(destination)
        try:
            async with self._pool.stream(
                "POST",
                url,
                headers=[(b"Host", destination.host_header.encode("ascii")), *headers],
                content=body,
                extensions={"timeout": timeouts},
            ) as response:
                received = await _read_capped(response, MAX_RESPONSE_BYTES)
                return _Answer(response.status, response.headers, received)
        finally:
            _pinned.reset(token)

    @contextlib.asynccontextmanager
    async def _gate(self, endpoint: str) -> AsyncIterator[None]:
        gate = self._gates.setdefault(endpoint, _Gate(self._concurrency))
        gate.users += 1
        try:
            async with gate.semaphore:
                yield
        finally:
            gate.users -= 1
            if gate.users == 0:
                del self._gates[endpoint]


async def _read_capped(response: httpcore.Response, limit: int) -> bytes:
    """Read at most `limit` body bytes; leaving early closes the connection instead of draining."""
    received = bytearray()
    chunks = response.aiter_stream()
    try:
        async for chunk in chunks:
            received += chunk[: limit - len(received)]
            if len(received) >= limit:
                break
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
    return bytes(received)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return _shorten(value.decode("latin-1"))
    return None


def _shorten(text: str) -> str:
    return " ".join(text.split())[:_DETAIL_CHARS]


def _elapsed_ms(began: float) -> int:
    return round((time.monotonic() - began) * 1000)
