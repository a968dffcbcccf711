"""One ESME bind over TCP: bind, window, enquire_link, throttling, reconnect and graceful close.

A session owns its connection and reconnects by itself (capped exponential backoff with
jitter) until it is closed or the SMSC refuses the credentials `auth_failure_limit` times.
`submit` sends one submit_sm and returns its submit_sm_resp; it retries throttled submits
(0x58, 0x14) itself, and raises a SubmitError subclass that says whether anything may have
reached the SMSC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from switchboard.channels.smpp.pdu import (
    HEADER_SIZE,
    Bind,
    BindReceiver,
    BindResp,
    BindTransceiver,
    BindTransmitter,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Header,
    Pdu,
    PduError,
    ShortMessage,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    decode,
    encode,
    status_name,
)

log = logging.getLogger(__name__)

THROTTLING_STATUSES = frozenset({CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL})
AUTH_STATUSES = frozenset({CommandStatus.ESME_RINVPASWD, CommandStatus.ESME_RINVSYSID})
_READ_SIZE = 256 * 1024
_WRITE_BUFFER_HIGH = 64 * 1024  # asyncio's default high-water mark


def _expire(future: asyncio.Future[Pdu]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class BindMode(StrEnum):
    TRANSCEIVER = "transceiver"
    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"

    @property
    def can_send(self) -> bool:
        return self is not BindMode.RECEIVER

    def bind_pdu(self, *, system_id: str, password: str, system_type: str) -> Bind:
        kind: type[Bind] = {
            BindMode.TRANSCEIVER: BindTransceiver,
            BindMode.TRANSMITTER: BindTransmitter,
            BindMode.RECEIVER: BindReceiver,
        }[self]
        return kind(system_id=system_id, password=password, system_type=system_type)


class SessionState(StrEnum):
    IDLE = "idle"  # not started
    CONNECTING = "connecting"
    BINDING = "binding"
    BOUND = "bound"
    BACKOFF = "backoff"  # waiting before the next connect
    CLOSING = "closing"
    CLOSED = "closed"
    AUTH_FAILED = "auth_failed"  # credentials refused auth_failure_limit times; no more tries


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    mode: BindMode = BindMode.TRANSCEIVER
    window: int = 10
    enquire_link_s: float = 30.0
    response_timeout_s: float = 60.0
    reconnect_initial_s: float = 10.0
    reconnect_max_s: float = 300.0
    reconnect_jitter: float = 0.2
    auth_failure_limit: int = 3
    auth_failure_statuses: frozenset[int] = AUTH_STATUSES
    throttle_pause_s: float = 1.0
    throttle_pause_max_s: float = 30.0
    throttle_retries: int = 5
    close_grace_s: float = 5.0
    # What a deliver_sm gets when the sink could not store it: 0x64 (ESME_RX_T_APPN) asks the
    # SMSC to redeliver later, so the report is not lost; 0 would drop it but never stall a bind.
    deliver_failure_status: int = CommandStatus.ESME_RX_T_APPN


class SubmitError(Exception):
    """A submit that did not return an accepted submit_sm_resp."""

    ambiguous = False  # True when the submit_sm may have reached the SMSC


class NotBoundError(SubmitError):
    """Nothing was sent: the session is not bound, is closing, or lost its link before writing."""


class SubmitRefusedError(SubmitError):
    """The SMSC answered with a non-zero status (or generic_nack); nothing will be delivered."""

    def __init__(self, status: int, *, nacked: bool = False, throttled_attempts: int = 0) -> None:
        super().__init__(f"submit_sm refused: {status_name(status)}")
        self.status = status
        self.nacked = nacked
        self.throttled_attempts = throttled_attempts


class SubmitTimeoutError(SubmitError):
    """No submit_sm_resp within response_timeout_s: the SMSC may have taken it."""

    ambiguous = True


class SubmitInterruptedError(SubmitError):
    """The link dropped (or the response was unreadable) after the submit_sm was written."""

    ambiguous = True


class BindRefusedError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {status_name(status)}")
        self.status = status


DeliverHandler = Callable[[ShortMessage], Awaitable[int]]
"""Stores a deliver_sm (or data_sm) and returns the command_status to answer it with."""


def backoff_delay(
    attempt: int, *, initial_s: float, max_s: float, jitter: float, rng: random.Random
) -> float:
    """Seconds before reconnect attempt `attempt` (1-based): doubling from initial, capped, ±jitter."""
    base = min(max_s, initial_s * 2.0 ** min(attempt - 1, 30))
    return max(0.0, base * rng.uniform(1 - jitter, 1 + jitter))


class TokenBucket:
    """Submits per second for one connector, shared by all its binds.

    Throttling halves the rate (never below `min_rate`) and pauses everyone; each accepted
    submit earns back a twentieth of the configured rate. A retry of a throttled submit takes
    its token ahead of the queue so that it is not overtaken by later submits.
    """

    def __init__(self, rate: float, *, min_rate: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.max_rate = rate
        self.min_rate = min_rate if min_rate is not None else min(1.0, rate)
        self._rate = rate
        self._capacity = max(1.0, rate / 10)
        self._tokens = self._capacity
        self._stamp: float | None = None
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self._queued = 0  # acquirers waiting for the lock or inside it

    @property
    def rate(self) -> float:
        return self._rate

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _refill(self) -> None:
        now = self._now()
        if self._stamp is not None:
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    async def _wait_pause(self) -> None:
        while True:
            left = self._paused_until - self._now()
            if left <= 0:
                return
            await asyncio.sleep(left)

    async def acquire(self, *, priority: bool = False) -> None:
        if priority:
            await self._wait_pause()
            self._refill()
            self._tokens -= 1  # borrowed: later submits wait for it to be paid back
            return
        if not self._queued and self._paused_until <= self._now():
            self._refill()  # nobody waits and a token is there: no lock needed
            if self._tokens >= 1:
                self._tokens -= 1
                return
        self._queued += 1
        try:
            await self._acquire_in_turn()
        finally:
            self._queued -= 1

    async def _acquire_in_turn(self) -> None:
        async with self._lock:
            while True:
                await self._wait_pause()
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._now() + seconds)

    def set_ceiling(self, rate: float) -> None:
        """A new configured rate (this process's share of the connector's TPS); the current
        rate never exceeds it, and throttling backs off from it as before."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        backed_off = self._rate < self.max_rate  # throttled lately: stay below the new ceiling
        self.max_rate = rate
        self.min_rate = min(self.min_rate, rate)
        self._rate = min(self._rate, rate) if backed_off else rate
        self._capacity = max(1.0, rate / 10)
        self._tokens = min(self._tokens, self._capacity)

    def penalise(self) -> None:
        self._rate = max(self.min_rate, self._rate / 2)

    def reward(self) -> None:
        self._rate = min(self.max_rate, self._rate + self.max_rate / 20)


class Window:
    """The submit slots of one bind. Urgent submits take the next free slot before the others,
    so an OTP waits behind at most the bulk submits already on the wire, not those queued."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    async def acquire(self, *, urgent: bool = False) -> None:
        if self._free > 0 and not self._urgent and (urgent or not self._normal):
            self._free -= 1
            return
        queue = self._urgent if urgent else self._normal
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(future)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release()  # granted just as the waiter was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(future)
            raise

    def release(self) -> None:
        for queue in (self._urgent, self._normal):
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)  # the slot goes straight to the next waiter
                    return
        self._free += 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStatus:
    name: str
    mode: BindMode
    state: SessionState
    outstanding: int
    window: int
    last_bind_status: int | None
    last_error: str | None
    auth_failures: int
    counters: Mapping[str, int] = field(default_factory=dict)


class EsmeSession:
    def __init__(
        self,
        config: SessionConfig,
        *,
        on_deliver: DeliverHandler,
        bucket: TokenBucket | None = None,
        name: str = "smpp",
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.can_send = config.mode.can_send
        self.name = name
        self._on_deliver = on_deliver
        self._bucket = bucket or TokenBucket(1000.0)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._state = SessionState.IDLE
        self._window = Window(config.window)
        self._outstanding: dict[int, asyncio.Future[Pdu]] = {}
        self._sequence = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = False
        self._wake = asyncio.Event()
        self._bound = asyncio.Event()
        self._submits_in_flight = 0
        self._out: list[bytes] = []
        self._last_rx = 0.0
        self.last_bind_status: int | None = None
        self.last_error: str | None = None
        self.auth_failures = 0
        self.counters: Counter[str] = Counter()

    # -- public surface --------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    @property
    def free_window(self) -> int:
        return self.config.window - self._submits_in_flight

    def is_bound(self) -> bool:
        return self._state is SessionState.BOUND

    def status(self) -> SessionStatus:
        return SessionStatus(
            name=self.name,
            mode=self.config.mode,
            state=self._state,
            outstanding=len(self._outstanding),
            window=self.config.window,
            last_bind_status=self.last_bind_status,
            last_error=self.last_error,
            auth_failures=self.auth_failures,
            counters=dict(self.counters),
        )

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name=f"smpp-{self.name}")

    async def wait_bound(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._bound.wait(), timeout_s)
        return self.is_bound()

    async def submit(self, pdu: SubmitSm, *, urgent: bool = False) -> SubmitSmResp:
        """Send one submit_sm within the window and the TPS budget; retry it while throttled.

        An `urgent` submit (an OTP) takes the next free window slot before waiting bulk ones.

        Returns the accepted submit_sm_resp. Raises NotBoundError (nothing sent),
        SubmitRefusedError (refused, including throttling beyond throttle_retries),
        SubmitTimeoutError / SubmitInterruptedError (ambiguous: it may have been taken).
        """
        if not self.config.mode.can_send:
            raise NotBoundError("a receiver bind cannot submit")
        if self._closing or not self.is_bound():
            raise NotBoundError(f"session {self.name} is {self._state.value}")
        throttled = 0
        pause = self.config.throttle_pause_s
        await self._window.acquire(urgent=urgent)
        try:
            self._submits_in_flight += 1
            try:
                while True:
                    await self._bucket.acquire(priority=throttled > 0)
                    if self._closing or not self.is_bound():
                        raise NotBoundError(f"session {self.name} is {self._state.value}")
                    self.counters["submit_sm"] += 1
                    response = await self._request(pdu)
                    if isinstance(response, GenericNack):
                        self.counters["generic_nack_received"] += 1
                        raise SubmitRefusedError(response.command_status, nacked=True)
                    status = response.command_status
                    if status == CommandStatus.ESME_ROK and isinstance(response, SubmitSmResp):
                        self._bucket.reward()
                        return response
                    if status in THROTTLING_STATUSES:
                        self.counters["throttled"] += 1
                        if throttled < self.config.throttle_retries:
                            throttled += 1
                            self._bucket.pause(pause)
                            self._bucket.penalise()
                            pause = min(pause * 2, self.config.throttle_pause_max_s)
                            continue
                    self.counters["submit_refused"] += 1
                    raise SubmitRefusedError(status, throttled_attempts=throttled)
            finally:
                self._submits_in_flight -= 1
        finally:
            self._window.release()

    async def close(self, grace_s: float | None = None) -> None:
        """Stop taking submits, wait (bounded) for in-flight ones, unbind, disconnect."""
        grace = self.config.close_grace_s if grace_s is None else grace_s
        self._closing = True
        self._wake.set()
        if self._state is SessionState.BOUND:
            self._state = SessionState.CLOSING
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            await self._drain(deadline)
            try:
                timeout = max(0.05, min(self.config.response_timeout_s, deadline - loop.time()))
                await self._request(Unbind(), timeout_s=timeout)
                self.counters["unbind_sent"] += 1
            except (SubmitError, PduError) as exc:
                log.info("smpp %s: unbind not acknowledged: %s", self.name, exc)
            # A deliver_sm that crossed our unbind is stored and answered before the link
            # goes; one left unanswered is redelivered by the SMSC to another receiver.
            await self._drain(deadline)
            self._drop_connection()
        if self._supervisor is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._supervisor), grace + 1.0)
            except TimeoutError:
                self._supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._supervisor
        for task in list(self._handlers):
            task.cancel()
        self._drop_connection()
        if self._state is not SessionState.AUTH_FAILED:
            self._state = SessionState.CLOSED

    async def _drain(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            left = deadline - loop.time()
            if left <= 0 or not (self._submits_in_flight or self._handlers):
                return
            await asyncio.sleep(min(0.01, left))

    def _stopping(self) -> bool:
        return self._closing

    # -- connection lifecycle --------------------------------------------------------------

    async def _supervise(self) -> None:
        attempt = 0
        while not self._closing:
            self._state = SessionState.CONNECTING
            bound = False
            try:
                bound = await self._connect_and_bind()
            except BindRefusedError as exc:
                self.last_bind_status = exc.status
                self.last_error = str(exc)
                self.counters["bind_refused"] += 1
                log.warning("smpp %s: %s", self.name, exc)
                if exc.status in self.config.auth_failure_statuses:
                    self.auth_failures += 1
                    if self.auth_failures >= self.config.auth_failure_limit:
                        self._state = SessionState.AUTH_FAILED
                        log.error(
                            "smpp %s: credentials refused %d times; giving up",
                            self.name,
                            self.auth_failures,
                        )
                        return
            except (OSError, TimeoutError, SubmitError, PduError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("smpp %s: connect failed: %s", self.name, self.last_error)
            except Exception as exc:  # a bug must not end the reconnect loop
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("smpp %s: session failed", self.name)
            finally:
                self._drop_connection()
            if bound:
                attempt = 0
            if self._stopping():
                break
            attempt += 1
            self._state = SessionState.BACKOFF
            delay = backoff_delay(
                attempt,
                initial_s=self.config.reconnect_initial_s,
                max_s=self.config.reconnect_max_s,
                jitter=self.config.reconnect_jitter,
                rng=self._rng,
            )
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _connect_and_bind(self) -> bool:
        """One connection: connect, bind, serve until it ends. True if it got bound."""
        config = self.config
        self.counters["connects"] += 1
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(config.host, config.port), config.response_timeout_s
        )
        self._reader, self._writer = reader, writer
        self._last_rx = asyncio.get_running_loop().time()
        reading = asyncio.create_task(self._read_loop(reader), name=f"smpp-{self.name}-read")
        try:
            self._state = SessionState.BINDING
            response = await self._request(
                config.mode.bind_pdu(
                    system_id=config.system_id,
                    password=config.password,
                    system_type=config.system_type,
                )
            )
            if (
                not isinstance(response, BindResp)
                or response.command_status != CommandStatus.ESME_ROK
            ):
                raise BindRefusedError(response.command_status or CommandStatus.ESME_RBINDFAIL)
            self.last_bind_status = CommandStatus.ESME_ROK
            self.last_error = None
            self.auth_failures = 0
            if self._closing:
                return True
            self._state = SessionState.BOUND
            self._bound.set()
            self.counters["binds"] += 1
            log.info(
                "smpp %s: bound as %s to %s:%d",
                self.name,
                config.mode.value,
                config.host,
                config.port,
            )
            keepalive = asyncio.create_task(self._keepalive(), name=f"smpp-{self.name}-keepalive")
            try:
                done, _ = await asyncio.wait(
                    {reading, keepalive}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                keepalive.cancel()
            reason = reading.result() if reading in done else keepalive.result()
            self.last_error = reason
            if not self._closing:
                log.warning("smpp %s: link ended: %s", self.name, reason)
            return True
        finally:
            self._bound.clear()
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading

    def _drop_connection(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        out, self._out = self._out, []
        if writer is not None:
            if out and not writer.is_closing():
                writer.write(b"".join(out))  # what was written before the drop goes first
            writer.close()
        for future in self._outstanding.values():
            if not future.done():
                future.set_exception(SubmitInterruptedError("link lost before the response"))
        self._outstanding.clear()

    async def _keepalive(self) -> str:
        loop = asyncio.get_running_loop()
        interval = self.config.enquire_link_s
        while True:
            idle = loop.time() - self._last_rx
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            try:
                await self._request(EnquireLink())
            except SubmitTimeoutError:
                self.counters["enquire_link_timeouts"] += 1
                self._drop_connection()
                return "enquire_link_resp timed out"
            except SubmitError as exc:
                return f"enquire_link failed: {exc}"
            self._last_rx = loop.time()

    # -- wire ------------------------------------------------------------------------------

    def _next_sequence(self) -> int:
        for _ in range(len(self._outstanding) + 1):
            self._sequence = self._sequence % 0x7FFFFFFF + 1
            if self._sequence not in self._outstanding:
                break
        return self._sequence

    async def _write(self, pdu: Pdu, sequence: int | None = None) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise NotBoundError("no connection")
        # PDUs written in one turn of the loop go out in one send(): a hundred submits freed
        # by one read of responses cost one system call, not a hundred.
        self._out.append(encode(pdu, sequence))
        if len(self._out) == 1:
            asyncio.get_running_loop().call_soon(self._flush, writer)
        # Waiting for drain() on every PDU costs a task per write (wait_for); wait only when
        # the transport holds more than its high-water mark, i.e. when drain() would block.
        if writer.transport.get_write_buffer_size() > _WRITE_BUFFER_HIGH:
            await asyncio.wait_for(writer.drain(), self.config.response_timeout_s)

    def _flush(self, writer: asyncio.StreamWriter) -> None:
        out, self._out = self._out, []
        if writer is self._writer and not writer.is_closing():
            writer.write(b"".join(out))
        # else: the link is gone; its requests fail with it (_drop_connection)

    async def _request(self, pdu: Pdu, *, timeout_s: float | None = None) -> Pdu:
        """Send a request and wait for the PDU answering its sequence number."""
        if self._writer is None:
            raise NotBoundError("no connection")
        sequence = self._next_sequence()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Pdu] = loop.create_future()
        self._outstanding[sequence] = future
        timeout = timeout_s or self.config.response_timeout_s
        try:
            try:
                await self._write(pdu, sequence)
            except (ConnectionError, TimeoutError) as exc:
                raise SubmitInterruptedError(f"write failed: {exc}") from exc
            # A timer on the future rather than wait_for(shield(…)): no task per request.
            timer = loop.call_later(timeout, _expire, future)
            try:
                return await future
            except TimeoutError:
                self.counters["response_timeouts"] += 1
                raise SubmitTimeoutError(
                    f"no response to {type(pdu).__name__} #{sequence} in {timeout:g}s"
                ) from None
            finally:
                timer.cancel()
        finally:
            if self._outstanding.get(sequence) is future:
                del self._outstanding[sequence]

    async def _read_loop(self, reader: asyncio.StreamReader) -> str:
        try:
            return await self._read_until_closed(reader)
        finally:
            # Nothing more can be read: fail waiting requests now rather than at their timeout.
            self._drop_connection()

    async def _read_until_closed(self, reader: asyncio.StreamReader) -> str:
        """Read whatever has arrived and handle every whole PDU in it (one read, many PDUs)."""
        loop = asyncio.get_running_loop()
        buffer = b""
        while True:
            try:
                chunk = await reader.read(_READ_SIZE)
            except (ConnectionError, OSError) as exc:
                return f"connection error: {exc}"
            if not chunk:
                return "connection closed by the SMSC"
            self._last_rx = loop.time()
            buffer = buffer + chunk if buffer else chunk
            position = 0
            while len(buffer) - position >= HEADER_SIZE:
                try:
                    header = Header.parse(buffer[position : position + HEADER_SIZE])
                except PduError as exc:
                    # No trustworthy length: answer once and drop, there is no way to resync.
                    await self._nack(exc)
                    self._drop_connection()
                    return f"framing error: {exc}"
                end = position + header.command_length
                if end > len(buffer):
                    break
                data = buffer[position:end]
                position = end
                ended = await self._handle(data)
                if ended is not None:
                    return ended
            buffer = buffer[position:]

    async def _handle(self, data: bytes) -> str | None:
        """One whole PDU from the SMSC; returns why the link ends, or None to go on."""
        try:
            pdu = decode(data)
        except PduError as exc:
            self._fail_request(exc)
            return None
        if pdu.is_response or isinstance(pdu, GenericNack):
            future = self._outstanding.get(pdu.sequence_number)
            if future is not None and not future.done():
                future.set_result(pdu)
            else:
                self.counters["late_responses"] += 1
        elif isinstance(pdu, EnquireLink):
            await self._answer(EnquireLinkResp(sequence_number=pdu.sequence_number))
        elif isinstance(pdu, Unbind):
            self.counters["unbind_received"] += 1
            await self._answer(UnbindResp(sequence_number=pdu.sequence_number))
            self._drop_connection()
            return "unbind from the SMSC"
        elif isinstance(pdu, DeliverSm | DataSm):
            task = asyncio.create_task(self._deliver(pdu))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        else:
            await self._nack(
                PduError(
                    "unexpected request",
                    command_status=CommandStatus.ESME_RINVCMDID,
                    sequence_number=pdu.sequence_number,
                )
            )
        return None

    def _fail_request(self, exc: PduError) -> None:
        """A PDU we could frame but not decode: fail the request it answers, or nack it."""
        if exc.command_id is not None and exc.command_id & 0x80000000:
            future = self._outstanding.get(exc.sequence_number)
            if future is not None and not future.done():
                future.set_exception(SubmitInterruptedError(f"unreadable response: {exc.reason}"))
            self.counters["malformed_responses"] += 1
            return
        task = asyncio.create_task(self._nack(exc))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _nack(self, exc: PduError) -> None:
        self.counters["generic_nack_sent"] += 1
        log.warning("smpp %s: malformed PDU: %s", self.name, exc.reason)
        await self._answer(
            GenericNack(sequence_number=exc.sequence_number, command_status=exc.command_status)
        )

    async def _answer(self, pdu: Pdu) -> None:
        try:
            await self._write(pdu)
        except (SubmitError, ConnectionError, TimeoutError) as exc:
            log.info("smpp %s: could not answer %s: %s", self.name, type(pdu).__name__, exc)

    async def _deliver(self, pdu: DeliverSm | DataSm) -> None:
        message = pdu if isinstance(pdu, DeliverSm) else _as_deliver_sm(pdu)
        self.counters["deliver_sm"] += 1
        try:
            status = await self._on_deliver(message)
        except Exception:
            # The report is not stored: ask the SMSC to redeliver rather than lose it.
            log.exception("smpp %s: deliver_sm handler failed", self.name)
            self.counters["deliver_sm_failed"] += 1
            status = self.config.deliver_failure_status
        answer: Pdu
        if isinstance(pdu, DeliverSm):
            answer = DeliverSmResp(sequence_number=pdu.sequence_number, command_status=status)
        else:
            answer = DataSmResp(sequence_number=pdu.sequence_number, command_status=status)
        await self._answer(answer)


def _as_deliver_sm(pdu: DataSm) -> DeliverSm:
    """data_sm carries the same addresses and flags; its text rides in message_payload."""
    return DeliverSm(
        sequence_number=pdu.sequence_number,
        service_type=pdu.service_type,
        source_addr_ton=pdu.source_addr_ton,
        source_addr_npi=pdu.source_addr_npi,
        source_addr=pdu.source_addr,
        dest_addr_ton=pdu.dest_addr_ton,
        dest_addr_npi=pdu.dest_addr_npi,
        destination_addr=pdu.destination_addr,
        esm_class=pdu.esm_class,
        registered_delivery=pdu.registered_delivery,
        data_coding=pdu.data_coding,
        tlvs=pdu.tlvs,
    )
