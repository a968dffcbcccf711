"""`Client`: the Switchboard / Message Central API over a blocking httpx client."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TypeVar

import httpx

from switchboard.client import models, protocol
from switchboard.client.errors import (
    InvalidCustomerIdError,
    SwitchboardConnectionError,
    SwitchboardError,
)
from switchboard.client.protocol import Call, Credentials, Json, MessageOptions, Retries

T = TypeVar("T")


class Client:
    """Give `credentials` (the token is fetched and renewed before it expires) or a `token`.

    Sends carry an Idempotency-Key (a new one per call unless given), so the bounded retries
    after a timeout or a 5xx never send twice; reads are retried as they are."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        retries: Retries | None = None,
        renew_before_s: float = 60.0,
        country: str = "91",
        clock: Callable[[], float] = time.time,
        http: httpx.Client | None = None,
    ) -> None:
        if (credentials is None) == (token is None):
            raise ValueError("give credentials or a token")
        self._credentials = credentials
        self._static_token = token
        self._country = country
        self._retries = retries or Retries()
        self._clock = clock
        self._tokens = protocol.TokenCache(renew_before_s=renew_before_s)
        self._own_http = http is None
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout_s)

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- token ------------------------------------------------------------------------------

    def token(self) -> str:
        """The current token: fetched on first use and again shortly before its `exp`."""
        if self._credentials is None:
            assert self._static_token is not None
            return self._static_token
        current = self._tokens.current(self._clock())
        if current is not None:
            return current
        params = self._credentials.token_params(self._country)
        answer = self._json(lambda: self._http.build_request("GET", protocol.TOKEN_PATH,
                                                              params=params))  # fmt: skip
        token = str(answer.get("token") or "")
        if not token:
            raise SwitchboardConnectionError("the token API answered without a token")
        self._tokens.keep(token)
        return token

    # -- VerifyNow --------------------------------------------------------------------------

    def send_otp(
        self,
        country_code: str | None = None,
        mobile_number: str | None = None,
        *,
        flow_type: str = "SMS",
        email: str | None = None,
        otp_length: int | None = None,
        otp_timeout_s: int | None = None,
        fallback: Sequence[str] | None = None,
        lang_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> models.OtpSent:
        """Send a code; for `flow_type="EMAIL"` the `email` alone is enough."""
        return self._run(protocol.send_otp(
            country_code, mobile_number, flow_type=flow_type, email=email, otp_length=otp_length,
            otp_timeout_s=otp_timeout_s, fallback=fallback, lang_id=lang_id,
            idempotency_key=idempotency_key,
        ))  # fmt: skip

    def validate_otp(
        self,
        verification_id: str,
        code: str,
        *,
        lang_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> models.OtpValidated:
        """Raises WrongOtpError (702), VerificationExpiredError (705) … on a refusal."""
        return self._run(protocol.validate_otp(
            verification_id, code, lang_id=lang_id, idempotency_key=idempotency_key
        ))  # fmt: skip

    def verification(self, verification_id: str) -> models.VerificationInfo:
        return self._run(protocol.verification(verification_id))

    # -- MessageNow -------------------------------------------------------------------------

    def send_sms(
        self,
        country_code: str | None,
        mobile_number: str | None,
        message: str,
        options: MessageOptions | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> models.SmsSent:
        """One message to one number (or, with `flow_type="EMAIL"`, to `options.email`)."""
        return self._run(protocol.send_sms(
            country_code, mobile_number, message, options or MessageOptions(), idempotency_key
        ))  # fmt: skip

    def send_sms_list(
        self,
        phone_numbers: Sequence[str],
        message: str,
        options: MessageOptions | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> models.CampaignAccepted:
        return self._run(protocol.send_sms_list(
            phone_numbers, message, options or MessageOptions(), idempotency_key
        ))  # fmt: skip

    def send_sms_file(
        self,
        workbook: str | os.PathLike[str] | bytes,
        message: str,
        options: MessageOptions | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> models.CampaignAccepted:
        """An .xlsx campaign; `message` may use `##var1##` … from the sheet's columns."""
        return self._run(protocol.send_sms_file(
            workbook, message, options or MessageOptions(), idempotency_key
        ))  # fmt: skip

    def campaign(self, campaign_id: str) -> models.Campaign:
        return self._run(protocol.campaign(campaign_id))

    def campaign_report(self, campaign_id: str) -> list[models.ReportRow]:
        return self._run(protocol.campaign_report(campaign_id))

    def message(self, message_id: str) -> models.MessageInfo:
        return self._run(protocol.message(message_id))

    # -- callbacks --------------------------------------------------------------------------

    def callback(self) -> models.CallbackSettings:
        return self._run(protocol.callback())

    def set_callback(
        self, url: str | None, *, events: Sequence[str] | None = None
    ) -> models.CallbackSettings:
        """Set (or, with None, remove) the callback URL; the first one's `secret` is returned once."""
        return self._run(protocol.set_callback(url, events))

    # -- plumbing ---------------------------------------------------------------------------

    def _run(self, call: Call[T]) -> T:
        cached = self._tokens.current(self._clock()) is not None
        try:
            return call.read(self._json(lambda: call.request(self._http, self.token())))
        except InvalidCustomerIdError:
            # a token fetched just now was refused: the credentials are wrong (asking again
            # would only count another failure towards the account's lockout)
            if self._credentials is None or not cached:
                raise
            # the cached token was revoked or expired early (clock skew): one fresh token, once
            self._tokens.drop()
            return call.read(self._json(lambda: call.request(self._http, self.token())))

    def _json(self, build: Callable[[], httpx.Request]) -> Json:
        attempts = max(1, self._retries.attempts)
        failure: SwitchboardError | None = None
        for attempt in range(attempts):
            if failure is not None:
                time.sleep(self._retries.pause_s(attempt - 1, failure.retry_after_s))
            try:
                return protocol.read_answer(self._http.send(build()))
            except httpx.TransportError as exc:
                failure = SwitchboardConnectionError(f"{type(exc).__name__}: {exc}")
            except SwitchboardError as exc:
                if not protocol.is_retryable(exc):
                    raise
                failure = exc
        assert failure is not None
        raise failure
