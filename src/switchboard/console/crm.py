"""The customer's CRM and fraud pages: automations and their jobs, CleverTap's settings, the
fraud guard's blocks and safe list — each through its own service, as the API uses it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from switchboard.console.sessions import Principal
from switchboard.console.web import checked_form, customer, page, render, see_other, services_of
from switchboard.errors import SwitchboardError
from switchboard.fraud.store import BlockQuery

router = APIRouter(prefix="/console", include_in_schema=False)
Customer = Annotated[Principal, Depends(customer)]


def _account_id(who: Principal) -> str:
    assert who.account is not None
    return who.account.id


def _field(form: dict[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


# -- automations ---------------------------------------------------------------------------


async def _automations(request: Request, who: Principal, **extra: Any) -> Response:
    service = services_of(request).automations
    if service is None:
        return render(request, "error.html", who, 404, message="Automations are not available.")
    account_id = _account_id(who)
    rules = await service.list(account_id)
    jobs = await service.jobs(account_id, limit=50)
    return await page(
        request, "automations.html", who, title="Automations", rules=rules, jobs=jobs, **extra
    )


@router.get("/automations", response_class=HTMLResponse)
async def automations(request: Request, who: Customer) -> Response:
    return await _automations(request, who)


@router.post("/automations/{automation_id}")
async def update_automation(request: Request, automation_id: str, who: Customer) -> Response:
    form = await checked_form(request, who)
    service = services_of(request).automations
    if service is None:
        return await _automations(request, who)
    changes: dict[str, Any] = {"enabled": form.get("enabled") == "on"}
    if template := _field(form, "template"):
        changes["template"] = template
    try:
        updated = await service.update(_account_id(who), automation_id, changes)
    except SwitchboardError as exc:
        return await see_other(request, who, "/console/automations", error=exc.message)
    state = "on" if updated.enabled else "off"
    return await see_other(
        request, who, "/console/automations", notice=f"“{updated.name}” is {state}."
    )


# -- CleverTap ------------------------------------------------------------------------------


async def _clevertap(request: Request, who: Principal, **extra: Any) -> Response:
    service = services_of(request).clevertap
    if service is None:
        return render(request, "error.html", who, 404, message="CleverTap is not available.")
    current = await service.settings(_account_id(who))
    return await page(request, "clevertap.html", who, title="CleverTap", settings=current, **extra)


@router.get("/clevertap", response_class=HTMLResponse)
async def clevertap(request: Request, who: Customer) -> Response:
    return await _clevertap(request, who)


@router.post("/clevertap")
async def configure_clevertap(request: Request, who: Customer) -> Response:
    form = await checked_form(request, who)
    service = services_of(request).clevertap
    if service is None:
        return await _clevertap(request, who)
    numbers = [n for n in _field(form, "replyNumbers").replace(",", " ").split() if n]
    try:
        await service.configure(
            _account_id(who),
            callback_url=_field(form, "callbackUrl") or None,
            default_country_code=_field(form, "defaultCountryCode") or None,
            reply_numbers=numbers,
        )
    except SwitchboardError as exc:
        return await see_other(request, who, "/console/clevertap", error=exc.message)
    return await see_other(request, who, "/console/clevertap", notice="CleverTap settings saved.")


# -- fraud guard ----------------------------------------------------------------------------


async def _fraud(request: Request, who: Principal, **extra: Any) -> Response:
    guard = services_of(request).fraud
    if guard is None:
        return render(request, "error.html", who, 404, message="The fraud guard is off.")
    account_id = _account_id(who)
    rule = _field(dict(request.query_params), "rule") or None
    blocks = await guard.blocks(account_id, BlockQuery(rule=rule, limit=100))
    safe = await guard.safe_list(account_id)
    return await page(
        request, "fraud.html", who, title="Fraud guard", blocks=blocks, safe=safe, rule=rule,
        **extra,
    )  # fmt: skip


@router.get("/fraud", response_class=HTMLResponse)
async def fraud(request: Request, who: Customer) -> Response:
    return await _fraud(request, who)


@router.post("/fraud/safe-list")
async def set_safe_list(request: Request, who: Customer) -> Response:
    form = await checked_form(request, who)
    guard = services_of(request).fraud
    if guard is None:
        return await _fraud(request, who)
    entries = [e for e in _field(form, "entries").replace(",", " ").split() if e]
    try:
        await guard.replace_safe_list(_account_id(who), entries)
    except SwitchboardError as exc:
        return await see_other(request, who, "/console/fraud", error=exc.message)
    return await see_other(
        request, who, "/console/fraud", notice=f"The safe list has {len(entries)} entries."
    )
