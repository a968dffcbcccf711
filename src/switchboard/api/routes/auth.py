"""The token API: `GET /auth/v1/authentication/token`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from switchboard.api import envelope
from switchboard.api.dependencies import container_of
from switchboard.errors import InvalidRequestError, ResponseCode, SwitchboardError

router = APIRouter(tags=["token"])


@router.get(
    "/auth/v1/authentication/token",
    summary="Generate an auth token",
    description="`key` is the customer's password in base64. The token goes in the `authToken` "
    "header of every other call.",
)
async def generate_token(
    request: Request,
    customer_id: str | None = Query(default=None, alias="customerId"),
    key: str | None = Query(default=None),
    scope: str | None = Query(default=None, description="'NEW' for the first time"),
    country: str | None = Query(default=None, description="Country code to send OTP to"),
    email: str | None = Query(default=None),
) -> JSONResponse:
    container = container_of(request)
    mode = container.settings.api.error_http_status
    try:
        if scope is not None and scope.strip().upper() not in {"NEW", ""}:
            raise InvalidRequestError("scope must be NEW")
        if country is not None and country.strip() and not country.strip().lstrip("+").isdigit():
            raise InvalidRequestError("country must be a numeric country code")
        account = await container.accounts.check_key(customer_id, key, email)
    except SwitchboardError as exc:
        body: dict[str, Any] = {"status": int(exc.code), **envelope.failure(exc.code, exc.message)}
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
        return JSONResponse(body, status_code=envelope.http_status(exc.code, mode), headers=headers)
    token = container.tokens.issue(account)
    return JSONResponse({"status": int(ResponseCode.SUCCESS), "token": token})
