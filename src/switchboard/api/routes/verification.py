"""VerifyNow on the Message Central surface: `/verification/v3/send` and `/validateOtp`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from switchboard.api import envelope, messagenow
from switchboard.api.dependencies import container_of, get_account, get_params
from switchboard.errors import InvalidRequestError, SwitchboardError
from switchboard.services.verification import SendRequest

router = APIRouter(tags=["VerifyNow"])

# The hot routes take the Request and resolve the token and the parameters themselves: FastAPI's
# dependency machinery (a header parameter, three dependencies) cost ~0.2 ms per request.
_AUTH_HEADER = {
    "name": "authToken",
    "in": "header",
    "required": True,
    "schema": {"type": "string"},
    "description": "The token from /auth/v1/authentication/token",
}

_SEND_PARAMS: dict[str, Any] = {
    "parameters": [_AUTH_HEADER]
    + [
        {
            "name": n,
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": d,
        }
        for n, d in (
            ("countryCode", "Country calling code, e.g. 91"),
            ("mobileNumber", "National number"),
            ("flowType", "SMS, WHATSAPP, RCS, EMAIL or SAUTH (silent authentication)"),
            ("otpLength", "4–8 digits (default 4)"),
            ("otpTimeout", "Validity in seconds, 20–600 (default from the account, 60)"),
            ("email", "Address for flowType EMAIL or an EMAIL fallback"),
            ("fallback", "Channels to try next, e.g. WHATSAPP,EMAIL"),
            ("clientIp", "The end user's IP address, for the fraud guard's per-IP limit"),
            ("type", "OTP (VerifyNow, default) or SMS (MessageNow)"),
        )
    ]
}


@router.post(
    "/verification/v3/send",
    summary="Send an OTP (VerifyNow) or a message (MessageNow, type=SMS)",
    description="Parameters may come in the query string, as form fields or as a JSON body.",
    openapi_extra=_SEND_PARAMS,
)
async def send(request: Request) -> Any:
    container = container_of(request)
    account = await get_account(request, request.headers.get("authtoken"))
    params = await get_params(request)
    kind = (params.get("type") or "OTP").upper()
    if kind == "SMS":
        return await messagenow.send(container, account, params)
    if kind != "OTP":
        raise InvalidRequestError(f"type '{params.get('type')}' is not one of OTP, SMS")
    send_request = SendRequest(
        country_code=params.get("countryCode"),
        mobile_number=params.get("mobileNumber"),
        flow_type=params.get("flowType"),
        otp_length=params.get("otpLength"),
        otp_timeout=params.get("otpTimeout"),
        email=params.get("email"),
        fallback=params.get("fallback"),
        lang_id=params.get("langId"),
        client_ip=params.get("clientIp"),
    )
    silent: dict[str, Any] | None = None
    if (send_request.flow_type or "").strip().upper() == "SAUTH":  # silent auth, ADR 0017
        offered = await container.silent_auth.start(account, send_request)
        started, silent = offered.started, offered.offer
    else:
        started = await container.verification.start(account, send_request)
    record = started.verification
    data: dict[str, Any] = {
        "verificationId": str(record.id),
        "mobileNumber": record.mobile_number,
        "responseCode": "200",
        "errorMessage": None,
        "timeout": str(record.timeout_s),
        "smsCLI": started.sender,
        "transactionId": record.transaction_id,
    }
    if silent is not None:
        data["silentAuth"] = silent
    return envelope.ok(data)


async def validate(request: Request) -> Any:
    container = container_of(request)
    account = await get_account(request, request.headers.get("authtoken"))
    params = await get_params(request)
    verification_id = params.get("verificationId")
    try:
        code = params.get("code")
        if code:
            record = await container.verification.check(
                account, verification_id, code, params.get("langId")
            )
        else:  # a SAUTH verification's outcome; any other answers "code is required"
            record = await container.silent_auth.check_without_code(
                account, verification_id, params.get("langId")
            )
    except SwitchboardError as exc:
        data = {"verificationId": verification_id, "verificationStatus": exc.code.name}
        body = envelope.failure(exc.code, exc.message, data)
        status = envelope.http_status(exc.code, container.settings.api.error_http_status)
        return JSONResponse(body, status_code=status)
    return envelope.ok(
        {
            "verificationId": str(record.id),
            "mobileNumber": record.mobile_number,
            "responseCode": "200",
            "errorMessage": None,
            "verificationStatus": "VERIFICATION_COMPLETED",
            "authToken": None,
            "transactionId": record.transaction_id,
        }
    )


_VALIDATE_PARAMS: dict[str, Any] = {
    "parameters": [
        _AUTH_HEADER,
        {"name": "verificationId", "in": "query", "required": True, "schema": {"type": "string"}},
        {
            "name": "code",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "The OTP; omit it to ask whether silent authentication completed",
        },
        {"name": "langId", "in": "query", "required": False, "schema": {"type": "string"}},
    ]
}

for _method in ("GET", "POST"):
    router.add_api_route(
        "/verification/v3/validateOtp",
        validate,
        methods=[_method],
        summary="Validate an OTP",
        operation_id=f"validate_otp_{_method.lower()}",
        openapi_extra=_VALIDATE_PARAMS,
    )
    router.add_api_route(
        "/verification/v3/validateOtp/",
        validate,
        methods=[_method],
        operation_id=f"validate_otp_slash_{_method.lower()}",
        include_in_schema=False,
    )
