"""The Message Central response envelope `{responseCode, message, data}` and its HTTP mapping."""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse

from switchboard.errors import ResponseCode

# The HTTP status used when `error_http_status = "mapped"`; the body always carries the code.
_HTTP_STATUS = {
    ResponseCode.SUCCESS: 200,
    ResponseCode.BAD_REQUEST: 400,
    ResponseCode.DUPLICATE_RESOURCE: 409,
    ResponseCode.SERVER_ERROR: 500,
    ResponseCode.INVALID_CUSTOMER_ID: 401,
    ResponseCode.INVALID_VERIFICATION_ID: 404,
    ResponseCode.REQUEST_ALREADY_EXISTS: 429,
    ResponseCode.INVALID_COUNTRY_CODE: 400,
    ResponseCode.VERIFICATION_FAILED: 400,
    ResponseCode.WRONG_OTP_PROVIDED: 400,
    ResponseCode.ALREADY_VERIFIED: 409,
    ResponseCode.VERIFICATION_EXPIRED: 410,
    ResponseCode.MAXIMUM_LIMIT_REACHED: 429,
}


def http_status(code: ResponseCode, mode: Literal["mapped", "200"]) -> int:
    if mode == "200":
        return 200
    return _HTTP_STATUS[code]


def success(data: dict[str, Any] | None) -> dict[str, Any]:
    return {"responseCode": int(ResponseCode.SUCCESS), "message": "SUCCESS", "data": data}


def ok(data: dict[str, Any] | None) -> JSONResponse:
    """`success` as a response, for the hot routes: FastAPI then skips its generic encoder (the
    data must already be plain JSON values)."""
    return JSONResponse(success(data))


def failure(
    code: ResponseCode, error_message: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An error body: the envelope, with the readable reason both at the top and in `data`."""
    return {
        "responseCode": int(code),
        "message": code.name,
        "errorMessage": error_message,
        "data": {**(data or {}), "responseCode": str(int(code)), "errorMessage": error_message},
    }
