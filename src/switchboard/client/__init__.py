"""The Python client of the Switchboard (and Message Central) API, sync and async; needs only httpx.

from switchboard.client import Client, Credentials

with Client("https://sms.example.com", Credentials(customer_id="C-1", password="…")) as api:
    sent = api.send_otp("91", "9876543210")
    api.validate_otp(sent.verification_id, "1234")   # WrongOtpError on a wrong code
"""

from __future__ import annotations

from switchboard.client.asynchronous import AsyncClient
from switchboard.client.errors import (
    AlreadyVerifiedError,
    BadRequestError,
    DuplicateResourceError,
    InvalidCountryCodeError,
    InvalidCustomerIdError,
    InvalidVerificationIdError,
    MaximumLimitReachedError,
    RequestAlreadyExistsError,
    ServerError,
    SwitchboardConnectionError,
    SwitchboardError,
    VerificationExpiredError,
    VerificationFailedError,
    WrongOtpError,
)
from switchboard.client.models import (
    CallbackSettings,
    Campaign,
    CampaignAccepted,
    MessageInfo,
    OtpSent,
    OtpValidated,
    ReportRow,
    SmsSent,
    VerificationInfo,
)
from switchboard.client.protocol import Credentials, MessageOptions, Retries
from switchboard.client.sync import Client

__all__ = [
    "AlreadyVerifiedError", "AsyncClient", "BadRequestError", "CallbackSettings", "Campaign",
    "CampaignAccepted", "Client", "Credentials", "DuplicateResourceError",
    "InvalidCountryCodeError", "InvalidCustomerIdError", "InvalidVerificationIdError",
    "MaximumLimitReachedError", "MessageInfo", "MessageOptions", "OtpSent", "OtpValidated",
    "ReportRow", "RequestAlreadyExistsError", "Retries", "ServerError", "SmsSent",
    "SwitchboardConnectionError", "SwitchboardError", "VerificationExpiredError",
    "VerificationFailedError", "VerificationInfo", "WrongOtpError",
]  # fmt: skip
