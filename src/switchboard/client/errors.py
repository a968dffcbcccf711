"""The client's error tree: one exception per Message Central response code.

SwitchboardError                     any refusal; `code` is the response code
├── SwitchboardConnectionError       no answer (timeouts, refused connections) after the retries
├── BadRequestError                  400
│   └── InvalidCountryCodeError      511
├── DuplicateResourceError           409 (also: an Idempotency-Key reused with another request)
├── ServerError                      500, or an answer that is not the API's
├── InvalidCustomerIdError           501 (bad credentials, expired or revoked token)
├── InvalidVerificationIdError       505
├── RequestAlreadyExistsError        506 (resend cooldown; see retry_after_s)
├── VerificationFailedError          700
├── WrongOtpError                    702
├── AlreadyVerifiedError             703
├── VerificationExpiredError         705
└── MaximumLimitReachedError         800 (see retry_after_s)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SwitchboardError(Exception):
    code: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        body: Mapping[str, Any] | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.http_status = http_status
        self.body: Mapping[str, Any] = body or {}
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code is not None else self.message


class SwitchboardConnectionError(SwitchboardError):
    pass


class BadRequestError(SwitchboardError):
    code = 400


class InvalidCountryCodeError(BadRequestError):
    code = 511


class DuplicateResourceError(SwitchboardError):
    code = 409


class ServerError(SwitchboardError):
    code = 500


class InvalidCustomerIdError(SwitchboardError):
    code = 501


class InvalidVerificationIdError(SwitchboardError):
    code = 505


class RequestAlreadyExistsError(SwitchboardError):
    code = 506


class VerificationFailedError(SwitchboardError):
    code = 700


class WrongOtpError(SwitchboardError):
    code = 702


class AlreadyVerifiedError(SwitchboardError):
    code = 703


class VerificationExpiredError(SwitchboardError):
    code = 705


class MaximumLimitReachedError(SwitchboardError):
    code = 800


BY_CODE: Mapping[int, type[SwitchboardError]] = {
    kind.code: kind
    for kind in (
        BadRequestError, InvalidCountryCodeError, DuplicateResourceError, ServerError,
        InvalidCustomerIdError, InvalidVerificationIdError, RequestAlreadyExistsError,
        VerificationFailedError, WrongOtpError, AlreadyVerifiedError, VerificationExpiredError,
        MaximumLimitReachedError,
    )
    if kind.code is not None
}  # fmt: skip


def error_for(
    code: int, message: str, *, http_status: int, body: Mapping[str, Any], retry_after_s: int | None
) -> SwitchboardError:
    """The exception of a response code; an unknown code is a ServerError carrying it."""
    kind = BY_CODE.get(code, ServerError)
    return kind(message, code=code, http_status=http_status, body=body, retry_after_s=retry_after_s)
