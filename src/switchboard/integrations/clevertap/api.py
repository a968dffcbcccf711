"""HTTP: CleverTap's `saveSingleSms` (the spec's path and headers) and native /api/v1/clevertap."""

from __future__ import annotations

import json
from typing import Annotated, Any, Protocol
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from switchboard import tenancy
from switchboard.api import envelope
from switchboard.config import Settings
from switchboard.domain.accounts import Account
from switchboard.errors import InvalidRequestError
from switchboard.integrations.clevertap.service import (
    CleverTapService,
    RecordResult,
    settings_view,
)
from switchboard.services.tokens import TokenService

router = APIRouter(tags=["clevertap"])
SEND_PATH = "/partners/central/api/saveSingleSms"


class Container(Protocol):
    """What these routes use of `bootstrap.Container` (the room does not import bootstrap)."""

    settings: Settings
    tokens: TokenService
    clevertap: CleverTapService


async def _container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def _account(
    request: Request, auth_token: Annotated[str | None, Header(alias="authToken")] = None
) -> Account:
    account = await (await _container(request)).tokens.authenticate(auth_token)
    tenancy.enter(account.id)
    return account


ContainerDep = Annotated[Container, Depends(_container)]
AccountDep = Annotated[Account, Depends(_account)]


async def _authenticate(container: Container, request: Request) -> Account:
    """The spec's `customerId` + `email` + `password` headers (the password may be an
    integration key), or `Authorization: Bearer sbk_…`; one answer (501) for every failure."""
    headers = request.headers
    account = await container.clevertap.authenticate(
        customer_id=headers.get("customerid"),
        email=headers.get("email"),
        password=headers.get("password"),
        authorization=headers.get("authorization"),
    )
    tenancy.enter(account.id)  # the batch's records are this account's alone (see `tenancy`)
    return account


async def _body(request: Request, limit: int) -> object:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidRequestError(f"the request body is larger than {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise InvalidRequestError(f"the request body is larger than {limit} bytes")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":  # CleverTap's key-value body
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    if not raw.strip():
        raise InvalidRequestError("the body is empty: CleverTap's JSON template is expected")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError("the body is not valid JSON") from None


def _record_view(result: RecordResult) -> dict[str, Any]:
    if result.error is not None:
        return {
            "index": result.index,
            "mid": result.mid,
            "responseCode": int(result.error.code),
            "errorMessage": result.error.message,
        }
    return {
        "index": result.index,
        "mid": result.mid,
        "responseCode": 200,
        "messageId": result.message_id,
        "verificationId": None if result.verification_id is None else str(result.verification_id),
        "transactionId": result.transaction_id,
        "mobileNumber": result.mobile_number,
        "status": "QUEUED",
    }


@router.post(SEND_PATH, summary="CleverTap Generic (Others) SMS provider: one record or a batch")
async def save_single_sms(request: Request, container: ContainerDep) -> Any:
    account = await _authenticate(container, request)
    body = await _body(request, container.settings.clevertap.max_body_bytes)
    sent = await container.clevertap.send(
        account, body, clevertap_account=request.headers.get("account")
    )
    if not sent.batched:
        [result] = sent.results
        if result.error is not None:
            raise result.error
        view = _record_view(result)
        del view["index"], view["responseCode"]
        return JSONResponse(envelope.success(view))
    accepted = sum(1 for r in sent.results if r.error is None)
    return JSONResponse(
        envelope.success(
            {
                "total": len(sent.results),
                "accepted": accepted,
                "failed": len(sent.results) - accepted,
                "results": [_record_view(r) for r in sent.results],
            }
        )
    )


class CleverTapUpdate(BaseModel):
    """PUT body: what to change; null or "" removes the URL or the country."""

    model_config = ConfigDict(extra="forbid")
    callbackUrl: str | None = Field(default=None, max_length=2048)  # noqa: N815
    defaultCountryCode: str | None = Field(default=None, max_length=4)  # noqa: N815
    # our numbers whose inbound messages go to CleverTap as `replied` events (the full list)
    replyNumbers: list[str] | None = Field(default=None, max_length=50)  # noqa: N815


@router.get("/api/v1/clevertap", summary="The customer's CleverTap settings")
async def get_settings(container: ContainerDep, account: AccountDep) -> dict[str, Any]:
    return envelope.success(settings_view(await container.clevertap.settings(account.id)))


@router.put(
    "/api/v1/clevertap", summary="Set the CleverTap callback URL, default country and reply numbers"
)
async def put_settings(
    body: CleverTapUpdate, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    if "callbackUrl" in given:
        changes["callback_url"] = body.callbackUrl
    if "defaultCountryCode" in given:
        changes["default_country_code"] = body.defaultCountryCode
    if "replyNumbers" in given:
        changes["reply_numbers"] = body.replyNumbers or []
    updated = await container.clevertap.configure(account.id, **changes)
    return envelope.success(settings_view(updated))
