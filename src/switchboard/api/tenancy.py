"""Each request starts and ends without an account scope (see `switchboard.tenancy`)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from switchboard import tenancy


class TenancyBoundary:
    """The outermost middleware: a request's account scope never outlives the request.

    The server runs each request in a task of its own, but an in-process ASGI client runs the app
    in the caller's task, and a scope entered there would cling to the caller afterwards.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with tenancy.scoped(None):
            await self.app(scope, receive, send)
