"""The app's HTTP surface: the OAuth callback (GET install, DELETE uninstall) and its pages."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from switchboard.errors import AuthenticationError, NotFoundError, SwitchboardError
from switchboard.ingest.csv_export import write_csv_rows
from switchboard.integrations.pipedrive import persons
from switchboard.integrations.pipedrive.client import PipedriveError, PipedriveGrantError
from switchboard.integrations.pipedrive.service import CALLBACK_PATH, PipedriveApp
from switchboard.integrations.pipedrive.sessions import PageAuthenticator, Viewer
from switchboard.integrations.pipedrive.tokens import NotInstalledError
from switchboard.observability import get_logger

log = get_logger("switchboard.pipedrive")
router = APIRouter(prefix="/integrations/pipedrive", include_in_schema=False)

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
# The pages carry tokens in their URLs and forms: never cached, never sent on as a Referer,
# no scripts at all, forms only to us.
_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'self' https://*.pipedrive.com"
    ),
}
_FAILED: Final = ("UNDELIVERABLE", "EXPIRED", "REJECTED", "FAILED", "CANCELLED")
_PENDING: Final = ("HELD", "QUEUED", "SENDING", "SUBMITTED", "UNKNOWN")


def _parts(request: Request) -> tuple[PipedriveApp, PageAuthenticator]:
    app: PipedriveApp | None = getattr(request.app.state, "pipedrive", None)
    if app is None:
        raise NotFoundError("the Pipedrive app is not configured here")
    return app, app.pages


def _page(name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(**values)
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


def _problem(error: Exception) -> HTMLResponse:
    if isinstance(error, AuthenticationError):
        return _page("message.html", 401, heading="Not allowed", message=error.message,
                     problem=True)  # fmt: skip
    if isinstance(error, NotInstalledError | PipedriveGrantError):
        return _page("message.html", 409, heading="Install the app again", message=str(error),
                     problem=True)  # fmt: skip
    if isinstance(error, PipedriveError):
        return _page("message.html", 502, heading="Pipedrive did not answer",
                     message=f"{error} — try again in a moment.", problem=True)  # fmt: skip
    if isinstance(error, SwitchboardError):
        status = 404 if isinstance(error, NotFoundError) else 400
        return _page("message.html", status, heading="Cannot do that", message=error.message,
                     problem=True)  # fmt: skip
    raise error


async def _guarded(action: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await action()
    except (SwitchboardError, PipedriveError) as error:
        return _problem(error)


# -- install / uninstall ----------------------------------------------------------------------


@router.get("/install")
async def start_install(request: Request) -> Response:
    """For installs begun outside the Marketplace: off to Pipedrive's consent page."""
    app, pages = _parts(request)
    state = pages.form_session(Viewer(company_id="", user_id=""))
    return Response(status_code=302, headers={"Location": app.authorize_url(state), **_HEADERS})


@router.get("/callback")
async def oauth_callback(request: Request) -> Response:
    app, pages = _parts(request)
    query = request.query_params
    if query.get("error"):
        return _page("message.html", 400, heading="Not installed", problem=True,
                     message="The app was not authorized in Pipedrive, so nothing changed.")  # fmt: skip

    async def install() -> Response:
        if query.get("state"):
            pages.from_form(query["state"])  # an install we began: our own signed state
        viewer = await app.install(query.get("code", ""))
        company = await app.company(viewer.company_id)
        return _page("settings.html", company=company, session=pages.form_session(viewer))

    return await _guarded(install)


@router.delete("/callback")
async def uninstall(request: Request) -> Response:
    """Pipedrive's uninstall: Basic client auth, JSON {client_id, company_id, user_id, …}."""
    app, _ = _parts(request)
    try:
        app.check_client_auth(request.headers.get("authorization"))
    except AuthenticationError as error:
        return JSONResponse({"success": False, "error": error.message}, status_code=401)
    try:
        body = await request.json()
        company_id = str(body["company_id"])
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"success": False, "error": "company_id is required"}, 400)
    if str(body.get("client_id", app.settings.client_id)) != app.settings.client_id:
        return JSONResponse({"success": False, "error": "not this app's client_id"}, 400)
    removed = await app.uninstall(company_id)
    return JSONResponse({"success": True, "removed": removed})


# -- settings ---------------------------------------------------------------------------------


@router.get("/settings")
async def settings_page(request: Request) -> Response:
    app, pages = _parts(request)

    async def show() -> Response:
        viewer = _from_pipedrive(pages, request)
        company = await app.company(viewer.company_id)
        return _page("settings.html", company=company, session=pages.form_session(viewer))

    return await _guarded(show)


@router.post("/settings")
async def save_settings(
    request: Request,
    session: str = Form(""),
    customer_id: str = Form(""),
    email: str = Form(""),
    password: str = Form(""),
    sender_id: str = Form(""),
    message_type: str = Form("TRANSACTIONAL"),
    default_country_code: str = Form(""),
) -> Response:
    app, pages = _parts(request)

    async def save() -> Response:
        viewer = pages.from_form(session)
        company = await app.company(viewer.company_id)
        fresh = pages.form_session(viewer)
        try:
            await app.save_settings(
                viewer, customer_id=customer_id, email=email, password=password,
                sender_id=sender_id, message_type=message_type,
                default_country_code=default_country_code,
            )  # fmt: skip
        except SwitchboardError as error:
            return _page("settings.html", 400, company=company, session=fresh, error=error.message)
        company = await app.company(viewer.company_id)
        return _page("settings.html", company=company, session=fresh, saved=True)

    return await _guarded(save)


# -- single send and SMS campaign ---------------------------------------------------------------


@router.get("/sms")
async def compose_page(request: Request) -> Response:
    """The link action on a person (details view) or on selected persons (list view)."""
    app, pages = _parts(request)

    async def show() -> Response:
        viewer = _from_pipedrive(pages, request)
        company, candidates = await app.candidates(viewer)
        return _page(
            "compose.html", title=_title(viewer), company=company, template="",
            session=pages.form_session(viewer), fields=persons.FIELDS,
            skipped=[c for c in candidates if c.phone is None], draft=None,
        )  # fmt: skip

    return await _guarded(show)


@router.post("/sms")
async def compose(
    request: Request, session: str = Form(""), message: str = Form(""), action: str = Form("")
) -> Response:
    app, pages = _parts(request)

    async def act() -> Response:
        viewer = pages.from_form(session)
        if action == "send":
            try:
                campaign = await app.send(viewer, message)
            except SwitchboardError as error:
                return await _draft_page(app, viewer, session, message, error.message, 400)
            return _page("sent.html", campaign=campaign, session=pages.form_session(viewer))
        return await _draft_page(app, viewer, session, message)

    return await _guarded(act)


async def _draft_page(
    app: PipedriveApp,
    viewer: Viewer,
    session: str,
    template: str,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    draft = None
    try:
        company, draft = await app.draft(viewer, template)
        skipped = draft.skipped
    except SwitchboardError as refused:
        error = error or refused.message
        status_code = 400
        company, candidates = await app.candidates(viewer)
        skipped = [c for c in candidates if c.phone is None]
    # the same session (and nonce) goes on, so preview then send is one send
    return _page(
        "compose.html", status_code, title=_title(viewer), company=company, template=template,
        session=session, fields=persons.FIELDS, skipped=skipped, draft=draft, error=error,
    )  # fmt: skip


def _title(viewer: Viewer) -> str:
    return "Send SMS" if len(viewer.selected_ids) == 1 else "SMS Campaign"


# -- campaign report --------------------------------------------------------------------------


@router.get("/report")
async def campaigns_page(request: Request) -> Response:
    app, pages = _parts(request)

    async def show() -> Response:
        viewer = _from_pipedrive(pages, request)
        summaries = await app.campaigns(viewer.company_id)
        return _page(
            "campaigns.html", summaries=summaries, session=pages.form_session(viewer),
            failed=lambda counts: sum(counts.get(s, 0) for s in _FAILED),
            pending=lambda counts: sum(counts.get(s, 0) for s in _PENDING),
        )  # fmt: skip

    return await _guarded(show)


@router.get("/report/{campaign_id}")
async def report_page(request: Request, campaign_id: str) -> Response:
    app, pages = _parts(request)

    async def show() -> Response:
        viewer = pages.from_form(request.query_params.get("token"))
        campaign, rows = await app.report(viewer.company_id, campaign_id)
        return _page("report.html", campaign=campaign, rows=rows,
                     session=request.query_params.get("token"))  # fmt: skip

    return await _guarded(show)


@router.get("/report/{campaign_id}/csv")
async def report_csv(request: Request, campaign_id: str) -> Response:
    app, pages = _parts(request)

    async def download() -> Response:
        viewer = pages.from_form(request.query_params.get("token"))
        campaign, rows = await app.report(viewer.company_id, campaign_id)
        buffer = io.StringIO()
        write_csv_rows(
            buffer,
            [("personId", "name", "number", "status", "deliveryStatus", "problem"),
             *((r.person_id, r.name, r.phone, r.status, r.delivery_status, r.problem)
               for r in rows)],
        )  # fmt: skip
        return Response(
            buffer.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={
                **_HEADERS,
                "Content-Disposition": f'attachment; filename="sms-campaign-{campaign.id}.csv"',
            },
        )

    return await _guarded(download)


def _from_pipedrive(pages: PageAuthenticator, request: Request) -> Viewer:
    query = request.query_params
    return pages.from_pipedrive(
        query.get("token"), company_id=query.get("companyId"), user_id=query.get("userId"),
        selected_ids=query.get("selectedIds"),
    )  # fmt: skip


__all__ = ["CALLBACK_PATH", "router"]
