"""`Idempotency-Key` on the send and validate routes: one run per key, its answer replayed to retries.

Stripe's semantics (ADR 0018). A request with the header claims `(account, route, key)` with a
fingerprint of the request; the first claim runs the request under a lease it renews, then
stores the status and body. A duplicate with the same fingerprint waits for that answer (an
in-process event, else polling the row; at most `idempotency.wait_s`, then 409 "in progress")
and gets it with `Idempotent-Replayed: true`; with another fingerprint it gets 409 at once.
A 5xx answer is not stored, so a retry runs again; a request whose process dies leaves its
lease to lapse, after which a retry runs again too. Keys are forgotten after `ttl_s` (24 h).

Without the header a request costs a dict lookup and a scan of its header names.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import tempfile
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import IO, TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.api import envelope
from switchboard.api.params import read_params
from switchboard.domain.idempotency import (
    IdempotencyRecord,
    KeyState,
    fingerprint,
    parse_key,
)
from switchboard.errors import (
    DuplicateResourceError,
    InvalidRequestError,
    ResponseCode,
    SwitchboardError,
)
from switchboard.observability import get_logger

if TYPE_CHECKING:
    from switchboard.bootstrap import Container

log = get_logger("switchboard.api.idempotency")

_VALIDATE = ("/verification/v3/validateOtp", "/verification/v3/validateOtp/")
COVERED: Mapping[tuple[str, str], str] = {
    ("POST", "/verification/v3/send"): "send",
    **{(method, path): "validateOtp" for method in ("GET", "POST") for path in _VALIDATE},
}
_HEADER = b"idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
_SPOOL_IN_MEMORY = 1024 * 1024  # bodies above this (uploads) wait on disk
_CHUNK = 64 * 1024
_FIRST_POLL_S, _MAX_POLL_S = 0.02, 0.5
_DIFFERENT = "this Idempotency-Key was used with a different request"
_IN_PROGRESS = "a request with this Idempotency-Key is still in progress; retry later"

_Ident = tuple[str, str, str]  # account, route, key


class Idempotency:
    def __init__(
        self, app: ASGIApp, *, container: Container, routes: Mapping[tuple[str, str], str] = COVERED
    ) -> None:
        self.app = app
        self._container = container
        self._routes = dict(routes)
        self._settings = container.settings.idempotency
        # The first request of each key run by this process: duplicates here wait on it
        # instead of polling the row.
        self._running: dict[_Ident, asyncio.Event] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self._routes.get((scope["method"], scope["path"]))
            if route is not None:
                for name, value in scope["headers"]:
                    if name == _HEADER:
                        await self._idempotent(route, value.decode("latin-1"), scope, receive, send)
                        return
        await self.app(scope, receive, send)

    async def _idempotent(
        self, route: str, raw_key: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        container = self._container
        try:
            key = parse_key(raw_key)
        except SwitchboardError as exc:
            await self._error(exc, scope, receive, send)
            return
        try:
            account = await container.tokens.authenticate(Headers(scope=scope).get("authtoken"))
        except SwitchboardError:
            await self.app(scope, receive, send)  # the route answers 501 as it always does
            return
        api, messaging = container.settings.api, container.settings.messaging
        limit = max(api.max_body_bytes, messaging.max_upload_bytes) + _CHUNK
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as body:
            try:
                if not await _spool(receive, body, limit):
                    return  # the client left before sending its request
            except SwitchboardError as exc:
                await self._error(exc, scope, receive, send)
                return
            replay = _replayer(body, receive)
            try:
                digest = await _fingerprint(scope, replay(), route, api.max_body_bytes,
                                            messaging.max_upload_bytes)  # fmt: skip
            except SwitchboardError:
                await self.app(scope, replay(), send)  # the route refuses these parameters
                return
            await self._once((account.id, route, key), digest, scope, replay, send)

    async def _once(
        self,
        ident: _Ident,
        digest: str,
        scope: Scope,
        replay: Callable[[], Receive],
        send: Send,
    ) -> None:
        store, clock = self._container.idempotency, self._container.clock
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.wait_s
        owner = secrets.token_hex(16)
        held = await store.claim(self._claim(ident, digest, owner), clock.now())
        pause = _FIRST_POLL_S
        while held is not None:
            if not hmac.compare_digest(held.fingerprint, digest):
                await self._error(DuplicateResourceError(_DIFFERENT), scope, replay(), send)
                return
            if held.state is KeyState.COMPLETED:
                await _replay(held, scope, replay(), send)
                return
            if held.is_free(clock.now()):  # its first request died: this one runs instead
                held = await store.claim(self._claim(ident, digest, owner), clock.now())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                busy = DuplicateResourceError(_IN_PROGRESS, retry_after_s=1)
                await self._error(busy, scope, replay(), send)
                return
            event = self._running.get(ident)
            if event is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
            else:  # the first request runs in another process
                await asyncio.sleep(min(pause, remaining))
                pause = min(pause * 2, _MAX_POLL_S)
            held = await store.get(*ident)
            if held is None:  # released after a 5xx: this one runs
                held = await store.claim(self._claim(ident, digest, owner), clock.now())
        await self._run_first(ident, owner, scope, replay(), send)

    def _claim(self, ident: _Ident, digest: str, owner: str) -> IdempotencyRecord:
        now = self._container.clock.now()
        account_id, route, key = ident
        return IdempotencyRecord(
            account_id=account_id,
            route=route,
            key=key,
            fingerprint=digest,
            owner=owner,
            state=KeyState.IN_PROGRESS,
            status_code=None,
            content_type=None,
            body=None,
            created_at=now,
            lease_until=now + timedelta(seconds=self._settings.lease_s),
            expires_at=now + timedelta(seconds=self._settings.ttl_s),
        )

    async def _run_first(
        self, ident: _Ident, owner: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        finished = asyncio.Event()
        self._running[ident] = finished
        renewal = asyncio.create_task(self._renew(ident, owner))
        answer = _Answer()

        async def capture(message: Message) -> None:
            answer.take(message)
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            renewal.cancel()
            try:
                if answer.complete:
                    await self._settle(ident, owner, answer)
            finally:
                self._running.pop(ident, None)
                finished.set()

    async def _settle(self, ident: _Ident, owner: str, answer: _Answer) -> None:
        store = self._container.idempotency
        body = bytes(answer.body)
        if _is_server_error(answer.status, body):
            await store.release(*ident, owner)
            return
        await store.complete(
            *ident, owner, status_code=answer.status, content_type=answer.content_type, body=body
        )

    async def _renew(self, ident: _Ident, owner: str) -> None:
        store, clock = self._container.idempotency, self._container.clock
        lease = self._settings.lease_s
        while True:
            await asyncio.sleep(lease / 3)
            try:
                if not await store.renew(*ident, owner, clock.now() + timedelta(seconds=lease)):
                    return
            except Exception:  # a database hiccup: the next round may get through
                log.exception("idempotency lease renewal failed", route=ident[1])

    async def _error(
        self, exc: SwitchboardError, scope: Scope, receive: Receive, send: Send
    ) -> None:
        mode = self._container.settings.api.error_http_status
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
        response = JSONResponse(
            envelope.failure(exc.code, exc.message),
            status_code=envelope.http_status(exc.code, mode),
            headers=headers,
        )
        await response(scope, receive, send)


class _Answer:
    """The response of the first request, as it goes out."""

    __slots__ = ("body", "complete", "content_type", "status")

    def __init__(self) -> None:
        self.status = 500
        self.content_type: str | None = None
        self.body = bytearray()
        self.complete = False

    def take(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.content_type = Headers(raw=message.get("headers", [])).get("content-type")
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
            self.complete = not message.get("more_body", False)


def _is_server_error(status: int, body: bytes) -> bool:
    """5xx, or the envelope's 500 under `error_http_status = "200"`: a retry should run."""
    if status >= 500:
        return True
    if status != 200:
        return False
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("responseCode") == ResponseCode.SERVER_ERROR


async def _spool(receive: Receive, body: IO[bytes], limit: int) -> bool:
    """Read the whole request body into `body`; False when the client disconnected."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise InvalidRequestError(f"the request is larger than {limit // (1024 * 1024)} MiB")
        body.write(chunk)
        if not message.get("more_body", False):
            return True


def _replayer(body: IO[bytes], receive: Receive) -> Callable[[], Receive]:
    """Receive callables that each deliver the spooled body from its start, then listen for the
    client's disconnect as the original would."""

    def replay() -> Receive:
        position = 0

        async def replayed() -> Message:
            nonlocal position
            if position < 0:
                return await receive()
            body.seek(position)
            chunk = body.read(_CHUNK)
            position += len(chunk)
            more = len(chunk) == _CHUNK and bool(body.read(1))
            if not more:
                position = -1
            return {"type": "http.request", "body": chunk, "more_body": more}

        return replayed

    return replay


async def _fingerprint(
    scope: Scope, receive: Receive, route: str, max_body_bytes: int, max_upload_bytes: int
) -> str:
    """The request's merged parameters and files, as the route will read them, hashed."""
    params = await read_params(
        Request(scope, receive), max_body_bytes=max_body_bytes, max_upload_bytes=max_upload_bytes
    )
    files: dict[str, tuple[str, str]] = {}
    try:
        for name, upload in params.files.items():
            digest = hashlib.sha256()
            while chunk := await upload.read(_CHUNK):
                digest.update(chunk)
            files[name] = (upload.filename or "", digest.hexdigest())
    finally:
        for upload in params.files.values():
            await upload.close()
    return fingerprint(str(scope["method"]), route, params.values, files)


async def _replay(record: IdempotencyRecord, scope: Scope, receive: Receive, send: Send) -> None:
    headers = {REPLAYED_HEADER: "true"}
    if record.content_type:
        headers["Content-Type"] = record.content_type
    response = Response(
        content=record.body or b"", status_code=record.status_code or 200, headers=headers
    )
    await response(scope, receive, send)
