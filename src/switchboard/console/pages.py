"""The customer's pages: home and keys, dashboard, logs, MessageNow and campaigns, callbacks,
billing, the sandbox outbox and integrations."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from switchboard.api.envelope import http_status
from switchboard.console.charts import daily_chart
from switchboard.console.sessions import Principal
from switchboard.console.store import SessionKind
from switchboard.console.web import (
    CsrfRefused,
    checked_form,
    clear_session_cookie,
    customer,
    log_in,
    log_out,
    page,
    render,
    see_other,
    services_of,
)
from switchboard.domain.accounts import Account
from switchboard.errors import NotFoundError, SwitchboardError, VerificationNotFoundError
from switchboard.ingest.csv_export import CsvCell, write_csv_rows
from switchboard.services.logs import LogQuery
from switchboard.services.messaging import MessageRequest
from switchboard.services.verification import SendRequest

router = APIRouter(prefix="/console", include_in_schema=False)
Customer = Annotated[Principal, Depends(customer)]


def _account(who: Principal) -> Account:
    assert who.account is not None
    return who.account


def _text(form: dict[str, Any], name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _status(exc: SwitchboardError) -> int:
    return http_status(exc.code, "mapped")


def _csv(rows: Iterable[Sequence[CsvCell]], filename: str) -> Response:
    buffer = io.StringIO()
    write_csv_rows(buffer, rows)
    return Response(
        buffer.getvalue(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )  # fmt: skip


# -- login ------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    return render(request, "login.html", None, action="/console/login", title="Sign in")


@router.post("/login")
async def login(request: Request) -> Response:
    return await log_in(request, SessionKind.CUSTOMER, action="/console/login", title="Sign in")


@router.post("/logout")
async def logout(request: Request, who: Customer) -> Response:
    return await log_out(request, who)


# -- home: customer id, credentials, integration keys, password ------------------------------


async def _home(request: Request, who: Principal, **extra: Any) -> Response:
    services = services_of(request)
    keys = await services.integration_keys.list(_account(who).id)
    return await page(request, "home.html", who, keys=keys, title="Home", **extra)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, who: Customer) -> Response:
    return await _home(request, who)


@router.post("/keys")
async def create_key(request: Request, who: Customer) -> Response:
    form = await checked_form(request, who)
    try:
        key, plain = await services_of(request).integration_keys.create(
            _account(who).id, str(form.get("name") or "")
        )
    except SwitchboardError as exc:
        return await see_other(request, who, "/console/", error=exc.message)
    return await see_other(request, who, "/console/", key_name=key.name, plain_key=plain)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, who: Customer, key_id: str) -> Response:
    await checked_form(request, who)
    try:
        await services_of(request).integration_keys.revoke(_account(who).id, key_id)
    except SwitchboardError as exc:
        return await see_other(request, who, "/console/", error=exc.message)
    return RedirectResponse("/console/", status_code=303)


@router.post("/password")
async def change_password(request: Request, who: Customer) -> Response:
    form = await checked_form(request, who)
    services = services_of(request)
    account = _account(who)
    try:
        await services.accounts.check_password(account.id, str(form.get("current") or ""))
        # a new password bumps the token version: API tokens and every console session end
        await services.accounts.update(account.id, password=str(form.get("new") or ""))
    except SwitchboardError as exc:
        return await see_other(request, who, "/console/", error=exc.message)
    response = RedirectResponse("/console/login", status_code=303)
    clear_session_cookie(response)
    return response


# -- dashboard --------------------------------------------------------------------------------


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request, who: Customer, days: int = 14) -> Response:
    services = services_of(request)
    try:
        board = await services.statistics.dashboard(_account(who).id, days=days)
    except SwitchboardError as exc:
        return render(request, "error.html", who, status_code=400, message=exc.message)
    return render(
        request, "dashboard.html", who, title="Dashboard", board=board, days=days,
        chart=daily_chart(board.days, board.by_day),
    )  # fmt: skip


# -- logs -------------------------------------------------------------------------------------


def _query(request: Request) -> LogQuery:
    q = request.query_params
    return LogQuery(number=q.get("number"), id=q.get("id"), status=q.get("status"))


@router.get("/messages", response_class=HTMLResponse)
async def messages(request: Request, who: Customer) -> Response:
    query = _query(request)
    try:
        found = await services_of(request).logs.messages(_account(who).id, query)
    except SwitchboardError as exc:
        found, error = [], str(exc.message)
    else:
        error = ""
    return render(
        request, "messages.html", who, title="Messages", rows=found, query=query, error=error
    )


@router.get("/messages/{message_id}", response_class=HTMLResponse)
async def message(request: Request, who: Customer, message_id: str) -> Response:
    try:
        record, events = await services_of(request).logs.message(_account(who).id, message_id)
    except NotFoundError as exc:
        return render(request, "error.html", who, status_code=404, message=exc.message)
    return render(request, "message.html", who, title="Message", m=record, events=events)


@router.get("/verifications", response_class=HTMLResponse)
async def verifications(request: Request, who: Customer) -> Response:
    query = _query(request)
    try:
        found = await services_of(request).logs.verifications(_account(who).id, query)
    except SwitchboardError as exc:
        found, error = [], str(exc.message)
    else:
        error = ""
    return render(
        request, "verifications.html", who, title="Verifications", rows=found, query=query,
        error=error, now=services_of(request).clock.now(),
    )  # fmt: skip


@router.get("/verifications/{verification_id}", response_class=HTMLResponse)
async def verification(request: Request, who: Customer, verification_id: str) -> Response:
    try:
        record, sends, checks = await services_of(request).verification.timeline(
            _account(who), verification_id
        )
    except (VerificationNotFoundError, SwitchboardError) as exc:
        return render(request, "error.html", who, status_code=404, message=exc.message)
    return render(
        request, "verification.html", who, title="Verification", v=record, sends=sends,
        checks=checks, now=services_of(request).clock.now(),
    )  # fmt: skip


# -- MessageNow and VerifyNow -------------------------------------------------------------------


@router.get("/send", response_class=HTMLResponse)
async def send_page(request: Request, who: Customer) -> Response:
    return await page(request, "send.html", who, title="Send")


@router.post("/send/otp")
async def send_otp(request: Request, who: Customer) -> Response:
    form = await checked_form(request, who)
    try:
        started = await services_of(request).verification.start(
            _account(who),
            SendRequest(
                country_code=_text(form, "countryCode"),
                mobile_number=_text(form, "mobileNumber"),
                flow_type=_text(form, "flowType") or "SMS",
            ),
        )
    except SwitchboardError as exc:
        return await see_other(request, who, "/console/send", error=exc.message)
    return RedirectResponse(f"/console/verifications/{started.verification.id}", status_code=303)


@router.post("/send/message")
async def send_message(request: Request, who: Customer) -> Response:
    form = await checked_form(request, who)
    try:
        accepted = await services_of(request).messaging.send(
            _account(who),
            MessageRequest(
                flow_type=_text(form, "flowType") or "SMS", message=_text(form, "message"),
                sender_id=_text(form, "senderId"), message_type=_text(form, "messageType"),
                country_code=_text(form, "countryCode"),
                mobile_number=_text(form, "mobileNumber"),
                template_id=_text(form, "templateId"), entity_id=_text(form, "entityId"),
            ),
        )  # fmt: skip
    except SwitchboardError as exc:
        return await see_other(request, who, "/console/send", error=exc.message)
    return RedirectResponse(f"/console/messages/{accepted.message_id}", status_code=303)


@router.post("/campaigns")
async def upload_campaign(request: Request, who: Customer) -> Response:
    """The .xlsx upload (sent by XHR with the campaign id the page chose, so the page can
    follow the staging while this request runs)."""
    form = await request.form(max_part_size=services_of(request).max_upload_bytes)
    if not services_of(request).sessions.check_csrf(who, str(form.get("csrf_token") or "")):
        raise CsrfRefused
    upload = form.get("file")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if upload is None or isinstance(upload, str):
        return JSONResponse({"error": "choose an .xlsx file"}, status_code=400)
    try:
        accepted = await services_of(request).messaging.send(
            _account(who),
            MessageRequest(
                flow_type=_text(fields, "flowType") or "SMS", message=_text(fields, "message"),
                sender_id=_text(fields, "senderId"), message_type=_text(fields, "messageType"),
                template_id=_text(fields, "templateId"), entity_id=_text(fields, "entityId"),
                campaign_id=_text(fields, "campaignId"),
            ),
            upload.file,
        )  # fmt: skip
    except SwitchboardError as exc:
        return JSONResponse({"error": exc.message}, status_code=_status(exc))
    finally:
        await upload.close()
    return JSONResponse(
        {"campaignId": accepted.campaign_id, "total": accepted.total,
         "accepted": accepted.accepted, "invalid": accepted.invalid}
    )  # fmt: skip


async def _campaign_state(request: Request, who: Principal, campaign_id: str) -> dict[str, Any]:
    record, counts = await services_of(request).messaging.campaign(_account(who), campaign_id)
    return {
        "id": record.id, "status": record.status, "total": record.total,
        "invalid": record.invalid, "staged": sum(counts.values()), "counts": counts,
    }  # fmt: skip


@router.get("/campaigns/{campaign_id}/progress")
async def campaign_progress(request: Request, who: Customer, campaign_id: str) -> Response:
    try:
        return JSONResponse(await _campaign_state(request, who, campaign_id))
    except NotFoundError:  # not created yet (the upload is still arriving), or not this account's
        return JSONResponse({"id": campaign_id, "status": "WAITING", "staged": 0}, 404)


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
async def campaign(request: Request, who: Customer, campaign_id: str) -> Response:
    try:
        record, counts = await services_of(request).messaging.campaign(_account(who), campaign_id)
    except NotFoundError as exc:
        return render(request, "error.html", who, status_code=404, message=exc.message)
    return render(request, "campaign.html", who, title="Campaign", c=record, counts=counts)


_REPORT = ("messageId", "mobileNumber", "status", "errorCode", "submittedAt", "doneAt")


@router.get("/campaigns/{campaign_id}/report.csv")
async def campaign_report(request: Request, who: Customer, campaign_id: str) -> Response:
    services = services_of(request)
    try:
        await services.messaging.campaign(_account(who), campaign_id)
    except NotFoundError as exc:
        return render(request, "error.html", who, status_code=404, message=exc.message)

    async def chunks() -> AsyncIterator[str]:
        buffer = io.StringIO()
        write_csv_rows(buffer, [_REPORT])
        async for m in services.messaging.campaign_messages(_account(who), campaign_id):
            write_csv_rows(
                buffer,
                [(m.id, m.destination, m.status.value, m.error_code, m.submitted_at, m.done_at)],
            )
            if buffer.tell() > 64_000:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return StreamingResponse(
        chunks(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )  # fmt: skip


# -- callbacks ----------------------------------------------------------------------------------


_CALLBACKS = "/console/callbacks"


async def _callbacks(request: Request, who: Principal, **extra: Any) -> Response:
    services = services_of(request)
    account_id = _account(who).id
    endpoint = await services.callbacks.endpoint(account_id)
    status = request.query_params.get("status") or None
    try:
        deliveries = await services.callbacks.deliveries(account_id, status=status, limit=100)
    except SwitchboardError as exc:
        deliveries, extra["error"] = [], exc.message
    return await page(
        request, "callbacks.html", who, title="Callbacks", endpoint=endpoint,
        deliveries=deliveries, status=status or "", **extra,
    )  # fmt: skip


@router.get("/callbacks", response_class=HTMLResponse)
async def callbacks(request: Request, who: Customer) -> Response:
    return await _callbacks(request, who)


@router.post("/callbacks")
async def configure_callbacks(request: Request, who: Customer) -> Response:
    form = await request.form()
    await checked_form(request, who)
    try:
        configured = await services_of(request).callbacks.configure(
            _account(who).id,
            url=str(form.get("url") or "").strip() or None,
            events=[str(e) for e in form.getlist("events")],
        )
    except SwitchboardError as exc:
        return await see_other(request, who, _CALLBACKS, error=exc.message)
    if configured.new_secret is None:
        return await see_other(request, who, _CALLBACKS, notice="Callback settings saved.")
    return await see_other(request, who, _CALLBACKS, secret=configured.new_secret)


@router.post("/callbacks/rotate")
async def rotate_secret(request: Request, who: Customer) -> Response:
    await checked_form(request, who)
    try:
        configured = await services_of(request).callbacks.rotate_secret(_account(who).id)
    except SwitchboardError as exc:
        return await see_other(request, who, _CALLBACKS, error=exc.message)
    if configured.new_secret is None:
        return await see_other(request, who, _CALLBACKS, notice="The signing secret was rotated.")
    return await see_other(request, who, _CALLBACKS, secret=configured.new_secret)


@router.post("/callbacks/deliveries/{delivery_id}/replay")
async def replay(request: Request, who: Customer, delivery_id: str) -> Response:
    await checked_form(request, who)
    try:
        await services_of(request).callbacks.replay(_account(who).id, delivery_id)
    except SwitchboardError as exc:
        return await see_other(request, who, _CALLBACKS, error=exc.message)
    return await see_other(request, who, _CALLBACKS, notice=f"Delivery {delivery_id} queued again.")


# -- billing ------------------------------------------------------------------------------------


@router.get("/billing", response_class=HTMLResponse)
async def billing(request: Request, who: Customer) -> Response:
    services = services_of(request)
    account_id = _account(who).id
    balance = await services.billing.balance(account_id)
    ledger = await services.billing.ledger(account_id, limit=50)
    usage = await services.billing.usage(account_id, group_by="day")
    return render(
        request, "billing.html", who, title="Billing", balance=balance, ledger=ledger,
        usage=usage, money=services.billing.currency.format,
    )  # fmt: skip


@router.get("/billing/ledger.csv")
async def ledger_csv(request: Request, who: Customer) -> Response:
    services = services_of(request)
    money = services.billing.currency.format
    entries = await services.billing.ledger(_account(who).id, limit=1000)
    rows: list[Sequence[CsvCell]] = [
        ("id", "createdAt", "kind", "amount", "balanceAfter", "reference")
    ]
    rows += [
        (e.id, e.created_at, e.kind.value, money(e.amount), money(e.balance_after), e.reference)
        for e in entries
    ]
    return _csv(rows, f"ledger-{_account(who).id}.csv")


@router.get("/billing/usage.csv")
async def usage_csv(request: Request, who: Customer) -> Response:
    services = services_of(request)
    money = services.billing.currency.format
    report = await services.billing.usage(_account(who).id, group_by="day")
    rows: list[Sequence[CsvCell]] = [("day", "messages", "segments", "delivered", "cost")]
    rows += [(r.key, r.messages, r.segments, r.delivered, money(r.cost)) for r in report.rows]
    return _csv(rows, f"usage-{_account(who).id}.csv")


# -- sandbox outbox and integrations ------------------------------------------------------------


@router.get("/outbox", response_class=HTMLResponse)
async def outbox(request: Request, who: Customer) -> Response:
    entries = await services_of(request).outbox.entries(_account(who).id, limit=50)
    return render(request, "outbox.html", who, title="Sandbox outbox", entries=entries[::-1])


@router.get("/integrations", response_class=HTMLResponse)
async def integrations(request: Request, who: Customer) -> Response:
    services = services_of(request)
    keys = await services.integration_keys.list(_account(who).id)
    return render(
        request, "integrations.html", who, title="Integrations", panels=services.integrations,
        keys=keys,
    )  # fmt: skip


# -- sender ids and DLT templates (kept in the account's settings, as the send paths read them) -


_SENDERS = "/console/senders"
_SENDER = re.compile(r"^[A-Za-z0-9 ._-]{1,11}$|^\+?[0-9]{1,15}$")
_COUNTRY = re.compile(r"^(\*|[0-9]{1,3})$")
_TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


async def _senders(request: Request, who: Principal, **extra: Any) -> Response:
    services = services_of(request)
    account = await services.accounts.get(_account(who).id)
    return await page(
        request, "senders.html", who, title="Sender ids and DLT templates",
        senders=services.verification.policy(account).sender_ids,
        templates=account.settings.get("dlt_templates") or {}, **extra,
    )  # fmt: skip


@router.get("/senders", response_class=HTMLResponse)
async def senders(request: Request, who: Customer) -> Response:
    return await _senders(request, who)


@router.post("/senders")
async def set_sender(request: Request, who: Customer) -> Response:
    form = await checked_form(request, who)
    country, sender = _text(form, "countryCode") or "", _text(form, "senderId") or ""
    if not _COUNTRY.match(country.removeprefix("+")):
        return await see_other(
            request, who, _SENDERS, error="the country code is 1-3 digits, or * for any"
        )
    if not _SENDER.match(sender):
        return await see_other(
            request, who, _SENDERS,
            error="a sender id is up to 11 letters/digits or up to 15 digits",
        )  # fmt: skip
    account = await services_of(request).accounts.get(_account(who).id)
    own = {**(account.settings.get("sender_ids") or {}), country.removeprefix("+"): sender}
    await services_of(request).accounts.update(account.id, settings={"sender_ids": own})
    return await see_other(
        request, who, _SENDERS, notice=f"OTP sender for {country} is now {sender}."
    )


@router.post("/templates")
async def register_template(request: Request, who: Customer) -> Response:
    form = await checked_form(request, who)
    template_id, text = _text(form, "templateId") or "", _text(form, "text") or ""
    if not _TEMPLATE_ID.match(template_id):
        return await see_other(
            request, who, _SENDERS, error="a template id is 1-64 letters, digits, . _ -"
        )
    if len(text) > 2000:
        return await see_other(
            request, who, _SENDERS, error="a template has at most 2,000 characters"
        )
    account = await services_of(request).accounts.get(_account(who).id)
    registered = dict(account.settings.get("dlt_templates") or {})
    if text:
        registered[template_id] = text
    else:
        registered.pop(template_id, None)
    await services_of(request).accounts.update(account.id, settings={"dlt_templates": registered})
    done = "registered" if text else "removed"
    return await see_other(request, who, _SENDERS, notice=f"Template {template_id} {done}.")
