"""The operator's pages: customers (create, disable, unlock, top up, limits), prices, connectors
and binds, queue depth, dead-lettered callbacks."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from switchboard.console.sessions import Principal
from switchboard.console.store import SessionKind
from switchboard.console.web import (
    checked_form,
    log_in,
    log_out,
    operator,
    page,
    render,
    see_other,
    services_of,
)
from switchboard.errors import NotFoundError, SwitchboardError

router = APIRouter(prefix="/console/admin", include_in_schema=False)
Operator = Annotated[Principal, Depends(operator)]


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    return render(
        request, "login.html", None, action="/console/admin/login", title="Operator sign in"
    )


@router.post("/login")
async def login(request: Request) -> Response:
    return await log_in(
        request, SessionKind.OPERATOR, action="/console/admin/login", title="Operator sign in"
    )


@router.post("/logout")
async def logout(request: Request, who: Operator) -> Response:
    return await log_out(request, who)


async def _overview(request: Request, who: Principal, **extra: Any) -> Response:
    services = services_of(request)
    return await page(
        request, "admin.html", who, title="Operations", customers=await services.accounts.list(),
        queue=await services.queue_depth(), connectors=services.connectors(),
        now=services.clock.now(), **extra,
    )  # fmt: skip


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, who: Operator) -> Response:
    return await _overview(request, who)


@router.post("/customers")
async def create_customer(request: Request, who: Operator) -> Response:
    form = await checked_form(request, who)
    try:
        account = await services_of(request).accounts.create_customer(
            email=str(form.get("email") or "").strip(),
            password=str(form.get("password") or ""),
            customer_id=str(form.get("customerId") or "").strip() or None,
            name=str(form.get("name") or "").strip(),
        )
    except SwitchboardError as exc:
        return await see_other(request, who, "/console/admin/", error=exc.message)
    return RedirectResponse(f"/console/admin/customers/{account.id}", status_code=303)


async def _customer(request: Request, who: Principal, customer_id: str, **extra: Any) -> Response:
    services = services_of(request)
    try:
        account = await services.accounts.get(customer_id)
    except NotFoundError as exc:
        return render(request, "error.html", who, status_code=404, message=exc.message)
    return await page(
        request, "admin_customer.html", who, title=f"Customer {account.id}", account=account,
        balance=await services.billing.balance(account.id),
        dead=await services.callbacks.deliveries(account.id, status="DEAD", limit=50),
        money=services.billing.currency.format, now=services.clock.now(), **extra,
    )  # fmt: skip


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer_page(request: Request, who: Operator, customer_id: str) -> Response:
    return await _customer(request, who, customer_id)


@router.post("/customers/{customer_id}/{action}")
async def customer_action(
    request: Request, who: Operator, customer_id: str, action: str
) -> Response:
    form = await checked_form(request, who)
    services = services_of(request)
    target = f"/console/admin/customers/{quote(customer_id, safe='')}"
    try:
        if action == "disable":
            await services.accounts.update(customer_id, enabled=False)
        elif action == "enable":
            await services.accounts.update(customer_id, enabled=True)
        elif action == "unlock":
            await services.accounts.update(customer_id, unlock=True)
        elif action == "topup":
            await services.billing.top_up(
                customer_id, str(form.get("amount") or ""),
                reference=str(form.get("reference") or "").strip() or None,
            )  # fmt: skip
        elif action == "limits":
            await services.billing.configure_wallet(
                customer_id, credit_limit=str(form.get("creditLimit") or "0"),
                low_balance_threshold=str(form.get("lowBalanceThreshold") or ""),
            )  # fmt: skip
        elif action == "replay":
            await services.callbacks.replay(customer_id, str(form.get("deliveryId") or ""))
        else:
            return render(request, "error.html", who, status_code=404, message="no such action")
    except SwitchboardError as exc:
        return await see_other(request, who, target, error=exc.message)
    return await see_other(request, who, target, notice=f"Done: {action}.")


_PRICES = "/console/admin/prices"


@router.get("/prices", response_class=HTMLResponse)
async def prices(request: Request, who: Operator) -> Response:
    services = services_of(request)
    return await page(
        request, "admin_prices.html", who, title="Prices", rules=await services.billing.prices(),
        money=services.billing.currency.format,
    )  # fmt: skip


@router.post("/prices/import")
async def import_prices(request: Request, who: Operator) -> Response:
    form = await request.form()
    await checked_form(request, who)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        return await see_other(request, who, _PRICES, error="choose a CSV file")
    try:
        text = (await upload.read()).decode("utf-8-sig")
        count = await services_of(request).billing.import_prices(
            text.splitlines(), merge=form.get("merge") == "on"
        )
    except UnicodeDecodeError:
        return await see_other(request, who, _PRICES, error="the file is not UTF-8 text")
    except SwitchboardError as exc:
        return await see_other(request, who, _PRICES, error=exc.message)
    return await see_other(request, who, _PRICES, notice=f"{count} price rules imported.")


@router.post("/prices/set")
async def set_price(request: Request, who: Operator) -> Response:
    form = await checked_form(request, who)
    try:
        await services_of(request).billing.set_price(
            channel=str(form.get("channel") or ""), prefix=str(form.get("prefix") or ""),
            message_type=str(form.get("messageType") or ""), price=str(form.get("price") or ""),
        )  # fmt: skip
    except SwitchboardError as exc:
        return await see_other(request, who, _PRICES, error=exc.message)
    return await see_other(request, who, _PRICES, notice="Price saved.")
