"""The ASGI application factory: routers, error mapping to the envelope, access logs without secrets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from switchboard.api import envelope
from switchboard.api.access_log import AccessLogMiddleware
from switchboard.api.hot_routes import HotRoutes
from switchboard.api.idempotency import Idempotency
from switchboard.api.routes import (
    auth,
    health,
    native,
    operations,
    provider_webhooks,
    verification,
)
from switchboard.api.routes import automations as automation_routes
from switchboard.api.routes import billing as billing_routes
from switchboard.api.routes import callbacks as callback_routes
from switchboard.api.routes import integration_keys as integration_key_routes
from switchboard.api.routes import shopify as shopify_routes
from switchboard.api.tenancy import TenancyBoundary
from switchboard.errors import ResponseCode, SwitchboardError
from switchboard.fraud import routes as fraud_routes
from switchboard.integrations.clevertap import api as clevertap_routes
from switchboard.integrations.pipedrive import routes as pipedrive_routes
from switchboard.observability import get_logger
from switchboard.silentauth import routes as silent_auth_routes

if TYPE_CHECKING:
    from switchboard.bootstrap import Container

log = get_logger("switchboard.api")


def create_app(container: Container, *, manage_lifecycle: bool = True) -> FastAPI:
    """Build the app around a container; with `manage_lifecycle` it starts and stops it too."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await container.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await container.stop()

    app = FastAPI(
        title="Switchboard",
        version="0.1.0",
        description=(
            "Self-hosted OTP verification and messaging, wire-compatible with the Message "
            "Central API. Every response carries `responseCode`, `message` and `data`."
        ),
        lifespan=lifespan,
        # No OpenTelemetry here: with it on, FastAPI asks OpenTelemetry for its providers on
        # every request, which reads the environment (5 % of the accept benchmark's CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.container = container
    app.state.pipedrive = container.pipedrive
    mode = container.settings.api.error_http_status

    def error_response(
        code: ResponseCode, message: str, retry_after_s: int | None = None
    ) -> JSONResponse:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s else None
        return JSONResponse(
            envelope.failure(code, message),
            status_code=envelope.http_status(code, mode),
            headers=headers,
        )

    @app.exception_handler(SwitchboardError)
    async def _known(_request: Request, exc: SwitchboardError) -> JSONResponse:
        return error_response(exc.code, exc.message, exc.retry_after_s)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if p not in ('body', 'query'))}: {err['msg']}"
            for err in exc.errors()
        )
        return error_response(ResponseCode.BAD_REQUEST, problems or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reasons = {404: "no such endpoint", 405: "method not allowed on this endpoint"}
        response = error_response(
            ResponseCode.BAD_REQUEST, reasons.get(exc.status_code, str(exc.detail))
        )
        if exc.status_code in (404, 405, 413):
            response.status_code = exc.status_code
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "-")
        log.exception("unhandled error", request_id=request_id, error=type(exc).__name__)
        response = error_response(
            ResponseCode.SERVER_ERROR, f"internal error; quote request id {request_id}"
        )
        response.headers["X-Request-Id"] = request_id
        return response

    hot = {
        ("POST", "/verification/v3/send"): verification.send,
        **{
            (method, path): verification.validate
            for method in ("GET", "POST")
            for path in ("/verification/v3/validateOtp", "/verification/v3/validateOtp/")
        },
    }
    app.add_middleware(HotRoutes, routes=hot, error_handlers=app.exception_handlers)
    # outside the hot routes, so it covers them; inside the access log, which sees replays
    app.add_middleware(Idempotency, container=container)
    app.add_middleware(AccessLogMiddleware, enabled=container.settings.server.access_log)
    app.add_middleware(TenancyBoundary)  # outermost: no account scope outlives its request
    app.include_router(auth.router)
    app.include_router(verification.router)
    app.include_router(native.router)
    app.include_router(callback_routes.router)
    app.include_router(billing_routes.router)
    app.include_router(integration_key_routes.router)
    app.include_router(automation_routes.router)
    app.include_router(clevertap_routes.router)
    app.include_router(fraud_routes.router)
    app.include_router(health.router)
    app.include_router(operations.router)
    app.include_router(provider_webhooks.router)
    app.include_router(pipedrive_routes.router)
    app.include_router(silent_auth_routes.router)
    app.include_router(shopify_routes.router)
    if container.console is not None and container.settings.console.enabled:
        from switchboard.console.web import install

        install(app, container.console)
    return app
