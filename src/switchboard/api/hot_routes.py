"""The routes every OTP goes through, served without FastAPI's router and dependency layers.

`POST /verification/v3/send` and `validateOtp` are most of the traffic. Their handlers take the
bare `Request` and resolve the token and parameters themselves; this middleware calls them
directly and answers errors with the app's own exception handlers, so the bodies are the same
as through FastAPI. FastAPI's routing (route matching, its request/response wrappers, an
`AsyncExitStack` per request) cost ≈ 0.1 ms per request (bench/RESULTS.md). The routes stay
registered on the app for the OpenAPI document and for every other method and path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi.encoders import jsonable_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Any]]
ErrorHandler = Callable[[Request, Exception], Any]


class HotRoutes:
    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[tuple[str, str], Handler],
        error_handlers: Mapping[Any, ErrorHandler],
    ) -> None:
        self.app = app
        self._routes = dict(routes)
        self._error_handlers = error_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = (
            self._routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            result = await handler(request)
            # a plain body (MessageNow's) is encoded as FastAPI would have
            response = (
                result if isinstance(result, Response) else JSONResponse(jsonable_encoder(result))
            )
        except Exception as exc:  # the app's own handlers: the same envelope as via FastAPI
            response = await self._error_handler(exc)(request, exc)
        await response(scope, receive, send)

    def _error_handler(self, exc: Exception) -> ErrorHandler:
        for kind in type(exc).__mro__:
            if kind in self._error_handlers:
                return self._error_handlers[kind]
        raise exc
