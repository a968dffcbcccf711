"""What both clients share, without I/O: credentials, the calls, reading answers, retry policy."""

from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from switchboard.client import models
from switchboard.client.errors import (
    BadRequestError,
    ServerError,
    SwitchboardError,
    error_for,
)

T = TypeVar("T")
Json = Mapping[str, Any]
TOKEN_PATH = "/auth/v1/authentication/token"  # noqa: S105 (a path)
SEND_PATH = "/verification/v3/send"
VALIDATE_PATH = "/verification/v3/validateOtp"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """A customer's id with its password, or with `key` (the password in base64, as the token
    API takes it); `email` as registered, if the account asks for it."""

    customer_id: str
    password: str | None = field(default=None, repr=False)
    key: str | None = field(default=None, repr=False)
    email: str | None = None

    def __post_init__(self) -> None:
        if (self.password is None) == (self.key is None):
            raise ValueError("give exactly one of password or key")

    def token_params(self, country: str) -> dict[str, str]:
        key = self.key or base64.b64encode((self.password or "").encode()).decode()
        params = {"customerId": self.customer_id, "key": key, "scope": "NEW", "country": country}
        if self.email:
            params["email"] = self.email
        return params


@dataclass(frozen=True, slots=True, kw_only=True)
class Retries:
    """Bounded retries of calls that are safe to repeat (reads, and sends carrying an
    Idempotency-Key): after a timeout, a lost connection or a 5xx."""

    attempts: int = 3
    backoff_s: float = 0.25
    max_backoff_s: float = 2.0
    max_retry_after_s: float = 10.0  # a longer Retry-After is the caller's decision, not ours

    def pause_s(self, attempt: int, retry_after_s: int | None) -> float:
        pause = float(min(self.backoff_s * 2**attempt, self.max_backoff_s))
        if retry_after_s:
            pause = max(pause, min(float(retry_after_s), self.max_retry_after_s))
        return pause


def token_expiry(token: str) -> tuple[float | None, float | None]:
    """`iat` and `exp` of a JWT, read without verifying it (only the server holds the key)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None, None
    if not isinstance(claims, dict):
        return None, None
    iat, exp = claims.get("iat"), claims.get("exp")
    return (
        float(iat) if isinstance(iat, int | float) else None,
        float(exp) if isinstance(exp, int | float) else None,
    )


@dataclass(slots=True)
class TokenCache:
    """The current token, renewed `renew_before_s` before its `exp` (at most half its life)."""

    renew_before_s: float = 60.0
    token: str | None = None
    renew_at: float | None = None

    def current(self, now: float) -> str | None:
        if self.token is None or (self.renew_at is not None and now >= self.renew_at):
            return None
        return self.token

    def keep(self, token: str) -> None:
        iat, exp = token_expiry(token)
        self.token = token
        if exp is None:
            self.renew_at = None
            return
        margin = self.renew_before_s
        if iat is not None:
            margin = min(margin, (exp - iat) / 2)
        self.renew_at = exp - margin

    def drop(self) -> None:
        self.token, self.renew_at = None, None


@dataclass(frozen=True, slots=True, kw_only=True)
class Call(Generic[T]):
    """One API call: the request to make and how to read its `data`."""

    method: str
    path: str
    read: Callable[[Json], T]
    params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    idempotency_key: str | None = None  # set on sends: a retry is then the same request

    def request(self, client: httpx.Client | httpx.AsyncClient, token: str) -> httpx.Request:
        headers = {"authToken": token, "accept": "application/json"}
        if self.idempotency_key:
            headers["Idempotency-Key"] = self.idempotency_key
        return client.build_request(
            self.method, self.path, params=dict(self.params), json=self.json,
            files=self.files, headers=headers,
        )  # fmt: skip


def _clean(values: Mapping[str, object | None]) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


def _key(given: str | None) -> str:
    return given or str(uuid.uuid4())


def retry_after(response: httpx.Response) -> int | None:
    value = response.headers.get("retry-after", "")
    return int(value) if value.isdigit() else None


def read_answer(response: httpx.Response) -> Json:
    """The answer's `data` (or the whole token answer); raises the code's exception."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        kind = ServerError if response.status_code >= 500 else BadRequestError
        raise kind(
            f"HTTP {response.status_code}: the answer is not the API's JSON",
            http_status=response.status_code,
        )
    raw_code = body.get("responseCode", body.get("status"))
    code = int(raw_code) if isinstance(raw_code, int | str) and str(raw_code).isdigit() else None
    if code is None:
        code = response.status_code
    if code != 200:
        message = body.get("errorMessage") or body.get("message") or f"response code {code}"
        raise error_for(
            code, str(message), http_status=response.status_code, body=body,
            retry_after_s=retry_after(response),
        )  # fmt: skip
    data = body.get("data", body)
    return data if isinstance(data, dict) else {"data": data}


def is_retryable(error: SwitchboardError) -> bool:
    return isinstance(error, ServerError) and (error.code == 500 or (error.http_status or 0) >= 500)


# -- the calls ------------------------------------------------------------------------------


def send_otp(
    country_code: str | None,
    mobile_number: str | None,
    *,
    flow_type: str,
    email: str | None,
    otp_length: int | None,
    otp_timeout_s: int | None,
    fallback: Sequence[str] | None,
    lang_id: str | None,
    idempotency_key: str | None,
) -> Call[models.OtpSent]:
    params = _clean({
        "countryCode": country_code, "mobileNumber": mobile_number, "flowType": flow_type,
        "email": email, "otpLength": otp_length, "otpTimeout": otp_timeout_s,
        "fallback": ",".join(fallback) if fallback else None, "langId": lang_id,
    })  # fmt: skip
    return Call(method="POST", path=SEND_PATH, params=params, read=models.OtpSent.parse,
                idempotency_key=_key(idempotency_key))  # fmt: skip


def validate_otp(
    verification_id: str, code: str, *, lang_id: str | None, idempotency_key: str | None
) -> Call[models.OtpValidated]:
    params = _clean({"verificationId": verification_id, "code": code, "langId": lang_id})
    # GET as the spec documents it (the hosted service too); with a key, a validation retried
    # after a lost answer gets the first answer (success) again, not 703 ALREADY_VERIFIED
    return Call(method="GET", path=VALIDATE_PATH, params=params,
                read=models.OtpValidated.parse, idempotency_key=_key(idempotency_key))  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageOptions:
    """MessageNow's options beside the recipients and the text."""

    sender_id: str | None = None
    flow_type: str = "SMS"
    message_type: str | None = None
    template_id: str | None = None
    entity_id: str | None = None
    schedule_time: str | None = None
    client_ref: str | None = None
    subject: str | None = None
    email: str | None = None
    dry_run: bool = False

    def params(self, message: str) -> dict[str, str]:
        return _clean({
            "type": "SMS", "flowType": self.flow_type, "message": message,
            "senderId": self.sender_id, "messageType": self.message_type,
            "templateId": self.template_id, "entityId": self.entity_id,
            "scheduleTime": self.schedule_time, "clientRef": self.client_ref,
            "subject": self.subject, "email": self.email,
            "dryRun": "true" if self.dry_run else None,
        })  # fmt: skip


def send_sms(
    country_code: str | None,
    mobile_number: str | None,
    message: str,
    options: MessageOptions,
    idempotency_key: str | None,
) -> Call[models.SmsSent]:
    params = options.params(message) | _clean(
        {"countryCode": country_code, "mobileNumber": mobile_number}
    )
    return Call(method="POST", path=SEND_PATH, params=params, read=models.SmsSent.parse,
                idempotency_key=_key(idempotency_key))  # fmt: skip


def send_sms_list(
    phone_numbers: Sequence[str],
    message: str,
    options: MessageOptions,
    idempotency_key: str | None,
) -> Call[models.CampaignAccepted]:
    """Entries as the spec writes them: country code, a space, the number (`91 9876543210`)."""
    if not phone_numbers:
        raise ValueError("phone_numbers is empty")
    params = options.params(message) | {"phoneNumbers": ",".join(phone_numbers)}
    return Call(method="POST", path=SEND_PATH, params=params,
                read=models.CampaignAccepted.parse, idempotency_key=_key(idempotency_key))  # fmt: skip


def send_sms_file(
    workbook: str | os.PathLike[str] | bytes,
    message: str,
    options: MessageOptions,
    idempotency_key: str | None,
    filename: str | None = None,
) -> Call[models.CampaignAccepted]:
    """An .xlsx of recipients (a path or its bytes), read once: every retry sends the same."""
    if isinstance(workbook, bytes):
        content, name = workbook, filename or "recipients.xlsx"
    else:
        path = Path(workbook)
        content, name = path.read_bytes(), filename or path.name
    return Call(method="POST", path=SEND_PATH, params=options.params(message),
                files={"file": (name, content, XLSX)}, read=models.CampaignAccepted.parse,
                idempotency_key=_key(idempotency_key))  # fmt: skip


def campaign(campaign_id: str) -> Call[models.Campaign]:
    return Call(method="GET", path=f"/api/v1/campaigns/{_segment(campaign_id)}",
                read=models.Campaign.parse)  # fmt: skip


def campaign_report(campaign_id: str) -> Call[list[models.ReportRow]]:
    def read(data: Json) -> list[models.ReportRow]:
        return [models.ReportRow.parse(row) for row in data.get("recipients") or ()]

    return Call(method="GET", path=f"/api/v1/campaigns/{_segment(campaign_id)}/report",
                params={"format": "json"}, read=read)  # fmt: skip


def callback() -> Call[models.CallbackSettings]:
    return Call(method="GET", path="/api/v1/callbacks", read=models.CallbackSettings.parse)


def set_callback(url: str | None, events: Sequence[str] | None) -> Call[models.CallbackSettings]:
    body: dict[str, Any] = {"callbackUrl": url}
    if events is not None:
        body["events"] = list(events)
    return Call(method="PUT", path="/api/v1/callbacks", json=body,
                read=models.CallbackSettings.parse)  # fmt: skip


def message(message_id: str) -> Call[models.MessageInfo]:
    return Call(method="GET", path=f"/api/v1/messages/{_segment(message_id)}",
                read=models.MessageInfo.parse)  # fmt: skip


def verification(verification_id: str) -> Call[models.VerificationInfo]:
    return Call(method="GET", path=f"/api/v1/verifications/{_segment(verification_id)}",
                read=models.VerificationInfo.parse)  # fmt: skip


def _segment(value: str) -> str:
    """An id as one path segment: never a way to reach another path."""
    if not value or "/" in value or value in {".", ".."} or "?" in value or "#" in value:
        raise ValueError(f"not an id: {value!r}")
    return value
