"""What every console page shares: templates, the session and CSRF checks, and mounting on the app."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from switchboard import tenancy
from switchboard.api.envelope import http_status
from switchboard.console.services import ConsoleServices
from switchboard.console.sessions import Principal
from switchboard.console.store import SessionKind
from switchboard.errors import SwitchboardError

COOKIE = "sb_console"
_HERE = Path(__file__).parent
templates = Jinja2Templates(directory=_HERE / "templates")
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class LoginRequired(Exception):  # noqa: N818 - a redirect, not an error
    def __init__(self, target: str) -> None:
        self.target = target


class CsrfRefused(Exception):  # noqa: N818
    pass


def services_of(request: Request) -> ConsoleServices:
    services: ConsoleServices = request.app.state.console
    return services


def _same_origin(request: Request, services: ConsoleServices) -> bool:
    """Fetch Metadata first (every current browser sends it), the Origin header otherwise."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    if origin is None:
        # neither header: not a browser of this decade; the form token still has to match
        return True
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin == own or origin in services.settings.trusted_origins


def check_origin(request: Request) -> None:
    if request.method in _UNSAFE and not _same_origin(request, services_of(request)):
        raise CsrfRefused


async def principal(request: Request, kind: SessionKind) -> Principal:
    """The request's live session of `kind`; LoginRequired otherwise."""
    services = services_of(request)
    found = await services.sessions.resolve(request.cookies.get(COOKIE))
    if found is None or found.session.kind is not kind:
        login = "/console/admin/login" if kind is SessionKind.OPERATOR else "/console/login"
        raise LoginRequired(login)
    check_origin(request)
    return found


async def customer(request: Request) -> Principal:
    found = await principal(request, SessionKind.CUSTOMER)
    if found.account is not None:
        tenancy.enter(found.account.id)  # the page shows this account's rows only
    return found


async def operator(request: Request) -> Principal:
    return await principal(request, SessionKind.OPERATOR)


async def checked_form(request: Request, who: Principal) -> dict[str, Any]:
    """The posted form's fields after its CSRF token matched the session's."""
    form = await request.form()
    if not services_of(request).sessions.check_csrf(who, str(form.get("csrf_token") or "")):
        raise CsrfRefused
    return dict(form.multi_items())


def render(
    request: Request, name: str, who: Principal | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        name,
        {"who": who, "csrf": who.csrf_token if who else "", **context},
        status_code=status_code,
    )


async def page(
    request: Request, name: str, who: Principal, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """`render`, with the one-time values a POST left in the session (shown once)."""
    flash = await services_of(request).sessions.take_flash(who)
    return render(request, name, who, status_code, **{**context, **flash})


async def see_other(request: Request, who: Principal, target: str, **flash: str) -> Response:
    """A POST's answer: 303 to the GET page `target`, which shows `flash` once. The values
    travel in the session, never in the URL (a new secret would reach logs and history)."""
    if flash:
        await services_of(request).sessions.set_flash(who, flash)
    return RedirectResponse(target, status_code=303)


async def log_in(request: Request, kind: SessionKind, *, action: str, title: str) -> Response:
    """The sign-in form's POST for `kind`: a session cookie and 303 to its home, or the form
    again with the refusal (no session, the status the error maps to)."""
    check_origin(request)
    form = await request.form()
    email, password = str(form.get("email") or ""), str(form.get("password") or "")
    sessions = services_of(request).sessions
    try:
        if kind is SessionKind.OPERATOR:
            value = await sessions.login_operator(email, password)
        else:
            value = await sessions.login_customer(email, password)
    except SwitchboardError as exc:
        return render(
            request, "login.html", None, status_code=http_status(exc.code, "mapped"),
            action=action, title=title, error=exc.message, email=email,
        )  # fmt: skip
    home = "/console/admin/" if kind is SessionKind.OPERATOR else "/console/"
    response = RedirectResponse(home, status_code=303)
    set_session_cookie(request, response, value)
    return response


async def log_out(request: Request, who: Principal) -> Response:
    await checked_form(request, who)
    await services_of(request).sessions.logout(who)
    kind = who.session.kind
    login = "/console/admin/login" if kind is SessionKind.OPERATOR else "/console/login"
    response = RedirectResponse(login, status_code=303)
    clear_session_cookie(response)
    return response


def _secure(request: Request, services: ConsoleServices) -> bool:
    mode = services.settings.secure_cookie
    if mode != "auto":
        return mode == "always"
    if request.url.scheme == "https":
        return True
    host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


def set_session_cookie(request: Request, response: Response, value: str) -> None:
    services = services_of(request)
    response.set_cookie(
        COOKIE, value, max_age=services.settings.session_ttl_s, path="/console",
        httponly=True, samesite="lax", secure=_secure(request, services),
    )  # fmt: skip


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/console")


def install(app: FastAPI, services: ConsoleServices) -> None:
    """Serve the console on `app` at /console/ (its pages, static files and redirects)."""
    from switchboard.console import admin, crm, pages

    app.state.console = services

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(exc.target, status_code=303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _exc: CsrfRefused) -> Response:
        return templates.TemplateResponse(
            request,
            "error.html",
            {"who": None, "csrf": "", "message": "This form came from another site or expired. "
             "Reload the page and try again."},
            status_code=403,
        )  # fmt: skip

    app.mount("/console/static", StaticFiles(directory=_HERE / "static"), name="console-static")
    app.include_router(pages.router)
    app.include_router(crm.router)
    app.include_router(admin.router)
