"""The error tree and the Message Central response codes every error maps to.

    SwitchboardError                 code
    ├── InvalidRequestError          400 BAD_REQUEST
    │   ├── InvalidCountryCodeError  511 INVALID_COUNTRY_CODE
    │   └── InsufficientFundsError   400 (the wallet cannot pay for the send; ADR 0008)
    ├── DuplicateResourceError       409 DUPLICATE_RESOURCE
    ├── AuthenticationError          501 INVALID_CUSTOMER_ID
    │   └── AccountLockedError       501 (with retry_after_s)
    ├── VerificationNotFoundError    505 INVALID_VERIFICATION_ID
    ├── RequestAlreadyExistsError    506 REQUEST_ALREADY_EXISTS (with retry_after_s)
    ├── VerificationFailedError      700 VERIFICATION_FAILED
    ├── WrongCodeError               702 WRONG_OTP_PROVIDED
    ├── AlreadyVerifiedError         703 ALREADY_VERIFIED
    ├── VerificationExpiredError     705 VERIFICATION_EXPIRED
    ├── LimitReachedError            800 MAXIMUM_LIMIT_REACHED (with retry_after_s)
    └── ConfigurationError           raised at start-up only, never on a request

Anything else that escapes a request is answered as 500 SERVER_ERROR without details.
"""

from __future__ import annotations

from enum import IntEnum


class ResponseCode(IntEnum):
    """The 13 response codes of the Message Central API, with their names as `message`."""

    SUCCESS = 200
    BAD_REQUEST = 400
    DUPLICATE_RESOURCE = 409
    SERVER_ERROR = 500
    INVALID_CUSTOMER_ID = 501
    INVALID_VERIFICATION_ID = 505
    REQUEST_ALREADY_EXISTS = 506
    INVALID_COUNTRY_CODE = 511
    VERIFICATION_FAILED = 700
    WRONG_OTP_PROVIDED = 702
    ALREADY_VERIFIED = 703
    VERIFICATION_EXPIRED = 705
    MAXIMUM_LIMIT_REACHED = 800


class SwitchboardError(Exception):
    """Base of every error a request can meet; `message` is safe to show to the caller."""

    code: ResponseCode = ResponseCode.SERVER_ERROR

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class InvalidRequestError(SwitchboardError):
    code = ResponseCode.BAD_REQUEST


class InvalidCountryCodeError(InvalidRequestError):
    code = ResponseCode.INVALID_COUNTRY_CODE


class InsufficientFundsError(InvalidRequestError):
    """The customer's balance (plus credit limit) does not cover the send; nothing was queued."""


class DuplicateResourceError(SwitchboardError):
    code = ResponseCode.DUPLICATE_RESOURCE


class AuthenticationError(SwitchboardError):
    code = ResponseCode.INVALID_CUSTOMER_ID


class AccountLockedError(AuthenticationError):
    pass


class VerificationNotFoundError(SwitchboardError):
    code = ResponseCode.INVALID_VERIFICATION_ID


class RequestAlreadyExistsError(SwitchboardError):
    code = ResponseCode.REQUEST_ALREADY_EXISTS


class VerificationFailedError(SwitchboardError):
    code = ResponseCode.VERIFICATION_FAILED


class WrongCodeError(SwitchboardError):
    code = ResponseCode.WRONG_OTP_PROVIDED


class AlreadyVerifiedError(SwitchboardError):
    code = ResponseCode.ALREADY_VERIFIED


class VerificationExpiredError(SwitchboardError):
    code = ResponseCode.VERIFICATION_EXPIRED


class LimitReachedError(SwitchboardError):
    code = ResponseCode.MAXIMUM_LIMIT_REACHED


class NotFoundError(SwitchboardError):
    """A native-API resource that does not exist or belongs to another account."""

    code = ResponseCode.BAD_REQUEST


class ConfigurationError(Exception):
    """Invalid configuration; stops start-up with a message naming the key."""
