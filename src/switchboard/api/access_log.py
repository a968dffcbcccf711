"""Request ids and the access log (secrets redacted) as a plain ASGI middleware.

Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs every
request through a task group and memory streams, which measured 1.3 ms of CPU per request here
(five times a whole `/healthz`; bench/RESULTS.md).
"""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.observability import get_logger, redact_query

log = get_logger("switchboard.api")


class AccessLogMiddleware:
    """Tags each request with an id (the client's `X-Request-Id` or a new one): in
    `request.state.request_id`, the log context and the response header; logs one line per
    request when `enabled`."""

    def __init__(self, app: ASGIApp, *, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        request_id = request_id or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("latin-1"))
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append(header)  # an error handler may have set it already
                message["headers"] = headers
            await send(message)

        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        if self.enabled:
            self._log(scope, status, started, request_id)

    @staticmethod
    def _log(scope: Scope, status: int, started: float, request_id: str) -> None:
        log.info(
            "request",
            method=scope["method"],
            path=scope["path"],
            query=redact_query(scope["query_string"].decode("latin-1")),
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            request_id=request_id,
        )
