"""VerifyNow: start a verification (limits, code, messages for each channel) and check codes."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from switchboard.clock import Clock
from switchboard.config import OtpSettings
from switchboard.domain import verification as domain
from switchboard.domain.accounts import Account
from switchboard.domain.limits import SendLimits
from switchboard.domain.messages import (
    Channel,
    MessageRecord,
    MessageStatus,
    MessageType,
    parse_flow_type,
)
from switchboard.domain.phone import (
    PhoneNumber,
    is_blocked_for_otp,
    normalise_country_code,
    parse_phone,
)
from switchboard.errors import (
    AlreadyVerifiedError,
    InvalidCountryCodeError,
    InvalidRequestError,
    VerificationExpiredError,
    VerificationFailedError,
    VerificationNotFoundError,
    WrongCodeError,
)
from switchboard.storage.base import VerificationStore

# at most 254 characters (RFC 5321 path limit): longer ones would not fit the columns
_EMAIL = re.compile(r"^(?=.{3,254}$)[^@\s]+@[^@\s]+\.[^@\s]+$")
SUPPORTED_LANGUAGES = frozenset({"en"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest:
    """The parameters of a VerifyNow send, as given (strings, unvalidated)."""

    country_code: str | None
    mobile_number: str | None
    flow_type: str | None
    otp_length: str | None = None
    otp_timeout: str | None = None
    email: str | None = None
    fallback: str | None = None
    lang_id: str | None = None
    client_ip: str | None = None  # the end user's address, for the fraud guard's per-IP limit


class SendGuard(Protocol):
    """The fraud guard as the send path sees it (switchboard/fraud/guard.py)."""

    def admit(
        self,
        account: Account,
        *,
        destination: str,
        country_code: str,
        client_ip: str | None,
        verification_id: int,
    ) -> AbstractAsyncContextManager[None]:
        """Refuse the send (800, 511) or let the body store it; a failed body uncounts it."""
        ...

    def verified(self, account_id: str, destination: str, country_code: str) -> None:
        """A code was verified (the conversion monitor's count)."""

    async def refuse_country(
        self,
        account: Account,
        *,
        destination: str,
        country_code: str,
        client_ip: str | None,
        permitted: frozenset[str],
    ) -> None:
        """Record a send the account's allowed countries refuse and raise its 511; returns
        (the caller raises its own 511) when the guard keeps no record for the account."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    verification: domain.VerificationRecord
    sender: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountPolicy:
    """The account's VerifyNow settings: its own overrides over the platform defaults."""

    code_length: int
    timeout_s: int
    max_attempts: int
    limits: SendLimits
    brand: str
    app_hash: str | None
    allowed_countries: frozenset[str] | None
    fallback: tuple[Channel, ...]
    sender_ids: dict[str, str]

    @classmethod
    def of(cls, account: Account, defaults: OtpSettings) -> AccountPolicy:
        own: dict[str, Any] = account.settings
        allowed = own.get("allowed_countries")
        return cls(
            code_length=int(own.get("otp_length", defaults.default_length)),
            timeout_s=int(own.get("otp_timeout_s", defaults.default_timeout_s)),
            max_attempts=int(own.get("max_attempts", defaults.max_attempts)),
            limits=SendLimits(
                resend_cooldown_s=int(own.get("resend_cooldown_s", defaults.resend_cooldown_s)),
                sends_per_10_min=int(own.get("sends_per_10_min", defaults.sends_per_10_min)),
                sends_per_day=int(own.get("sends_per_day", defaults.sends_per_day)),
                account_daily_quota=int(own.get("daily_quota", defaults.account_daily_quota)),
            ),
            brand=str(own.get("brand") or account.name or defaults.brand),
            app_hash=own.get("app_hash") or None,
            allowed_countries=frozenset(str(c) for c in allowed) if allowed else None,
            fallback=tuple(Channel(c) for c in own.get("fallback", [])),
            sender_ids={**defaults.sender_ids, **own.get("sender_ids", {})},
        )


class VerificationService:
    def __init__(
        self,
        store: VerificationStore,
        clock: Clock,
        *,
        pepper: bytes,
        otp: OtpSettings,
        test_numbers: dict[str, str],
        on_queued: Callable[[], None] = lambda: None,
        guard: SendGuard | None = None,
    ) -> None:
        self._guard = guard
        self._store = store
        self._clock = clock
        self._pepper = pepper
        self._otp = otp
        self._test_numbers = test_numbers
        self._on_queued = on_queued

    def policy(self, account: Account) -> AccountPolicy:
        return AccountPolicy.of(account, self._otp)

    async def start(
        self, account: Account, request: SendRequest, *, hold_first_s: int = 0
    ) -> Started:
        """Start a verification. `hold_first_s` delays its first message that long (and the
        expiry with it): silent authentication's window before the OTP falls back (ADR 0017)."""
        policy = self.policy(account)
        channel = parse_flow_type(request.flow_type)
        _check_language(request.lang_id)
        code_length = domain.parse_code_length(request.otp_length, policy.code_length)
        timeout_s = domain.parse_timeout(request.otp_timeout, policy.timeout_s)
        email = (request.email or "").strip() or None
        if channel is Channel.EMAIL and (email is None or not _EMAIL.match(email)):
            raise InvalidRequestError("email is required (a valid address) for flowType EMAIL")
        if email is not None and not _EMAIL.match(email):
            raise InvalidRequestError(f"email '{email}' is not a valid address")
        phone = self._recipient_phone(channel, request)
        if (
            phone is not None
            and policy.allowed_countries is not None
            and phone.country_code not in policy.allowed_countries
        ):
            if self._guard is not None and phone.e164 not in self._test_numbers:
                await self._guard.refuse_country(
                    account, destination=phone.e164, country_code=phone.country_code,
                    client_ip=request.client_ip, permitted=policy.allowed_countries,
                )  # fmt: skip
            raise InvalidCountryCodeError(
                f"country code {phone.country_code} is not enabled for this account"
            )
        fallback = (
            domain.parse_fallback(request.fallback, channel)
            if request.fallback
            else tuple(c for c in policy.fallback if c is not channel)
        )
        if phone is None:
            fallback = _email_only_fallback(fallback, explicit=bool(request.fallback))
        if Channel.EMAIL in fallback and email is None:
            raise InvalidRequestError("email is required when the fallback plan includes EMAIL")

        is_test = phone is not None and phone.e164 in self._test_numbers
        code = (
            self._test_numbers[phone.e164]
            if phone and is_test
            else domain.generate_code(code_length)
        )
        now = self._clock.now()
        verification_id = domain.new_verification_id()
        record = domain.VerificationRecord(
            id=verification_id,
            account_id=account.id,
            transaction_id=str(uuid.uuid4()),
            channel=channel,
            country_code=phone.country_code if phone else "",
            mobile_number=phone.national_number if phone else "",
            # the key of the per-recipient lock, limits and cooldown
            destination=phone.e164 if phone else _normalised_address(email),
            code_hash=domain.hash_code(self._pepper, verification_id, code),
            status=domain.VerificationStatus.PENDING,
            attempts=0,
            max_attempts=policy.max_attempts,
            timeout_s=timeout_s,
            created_at=now,
            expires_at=now + timedelta(seconds=timeout_s + hold_first_s),
            ended_at=None,
            fallback=fallback,
            is_test=is_test,
        )
        country = phone.country_code if phone else ""
        sender = policy.sender_ids.get(country) or policy.sender_ids.get("*")
        outbound = [
            self._message(record, step, step_channel, code, phone, email, sender, policy)
            for step, step_channel in enumerate((channel, *fallback))
        ]
        if hold_first_s:
            outbound[0] = replace(outbound[0], not_before=now + timedelta(seconds=hold_first_s))
        # Test numbers bypass the send limits: they exist for reviewers and CI.
        limits = None if is_test else policy.limits
        async with self._screen(account, record, request.client_ip):
            await self._store.start_verification(record, len(code), outbound, limits, now)
        self._on_queued()
        return Started(verification=record, sender=sender if channel is Channel.SMS else None)

    def _recipient_phone(self, channel: Channel, request: SendRequest) -> PhoneNumber | None:
        """The number to send to; None for an e-mailed code without one (the address is all
        an e-mail verification needs)."""
        if channel is Channel.EMAIL and not (request.mobile_number or "").strip():
            if (request.country_code or "").strip():
                normalise_country_code(request.country_code)  # given by habit: still checked
            return None
        return self._phone(request.country_code, request.mobile_number)

    def _screen(
        self, account: Account, record: domain.VerificationRecord, client_ip: str | None
    ) -> AbstractAsyncContextManager[None]:
        """The fraud guard around the store's transaction (test numbers skip it, and so do
        codes e-mailed to an address alone: its rules are about number ranges)."""
        if self._guard is None or record.is_test or not record.destination.startswith("+"):
            return contextlib.nullcontext()
        return self._guard.admit(
            account,
            destination=record.destination,
            country_code=record.country_code,
            client_ip=client_ip,
            verification_id=record.id,
        )

    def _phone(self, country_code: str | None, mobile_number: str | None) -> PhoneNumber:
        try:
            phone = parse_phone(country_code, mobile_number)
        except InvalidCountryCodeError:
            raise
        except InvalidRequestError:
            test = self._test_phone(country_code, mobile_number)
            if test is None:
                raise
            return test
        if phone.e164 not in self._test_numbers and is_blocked_for_otp(phone):
            raise InvalidRequestError(
                "codes are not sent to premium-rate, toll-free or similar numbers"
            )
        return phone

    def _test_phone(
        self, country_code: str | None, mobile_number: str | None
    ) -> PhoneNumber | None:
        """Sandbox test numbers are accepted as configured, valid in numbering plans or not."""
        code = (country_code or "").strip().lstrip("+")
        national = (mobile_number or "").strip()
        e164 = f"+{code}{national}"
        if code.isdigit() and national.isdigit() and e164 in self._test_numbers:
            return PhoneNumber(country_code=code, national_number=national, e164=e164)
        return None

    def _message(
        self,
        record: domain.VerificationRecord,
        step: int,
        channel: Channel,
        code: str,
        phone: PhoneNumber | None,
        email: str | None,
        sender: str | None,
        policy: AccountPolicy,
    ) -> MessageRecord:
        subject = html = None
        if channel is Channel.EMAIL:
            assert email is not None
            subject, text, html = domain.otp_email(code, policy.brand, record.timeout_s)
            destination = email
        else:
            assert phone is not None  # _email_only_fallback keeps phone channels out
            text = domain.otp_text(code, policy.brand, record.timeout_s, policy.app_hash)
            destination = phone.e164
        return MessageRecord(
            id=str(uuid.uuid4()),
            numeric_id=domain.new_verification_id() if step else record.id,
            transaction_id=record.transaction_id,
            account_id=record.account_id,
            channel=channel,
            message_type=MessageType.OTP,
            status=MessageStatus.QUEUED if step == 0 else MessageStatus.HELD,
            destination=destination,
            country_code=record.country_code,
            sender=sender if channel is Channel.SMS else None,
            body=text,
            otp_code=code,
            subject=subject,
            html=html,
            verification_id=record.id,
            step=step,
            not_before=record.created_at if step == 0 else None,
            expires_at=record.expires_at,
            created_at=record.created_at,
        )

    async def check(
        self, account: Account, verification_id: str | None, code: str | None, lang_id: str | None
    ) -> domain.VerificationRecord:
        """Validate a code; raises the spec's 505/700/702/703/705 errors."""
        _check_language(lang_id)
        if not verification_id:
            raise InvalidRequestError("verificationId is required")
        if not code:
            raise InvalidRequestError("code is required")
        vid = _verification_id(verification_id)
        pepper = self._pepper
        result, record = await self._store.check_code(
            account.id,
            vid,
            lambda r: domain.code_matches(pepper, r.id, code, r.code_hash),
            self._clock.now(),
        )
        if result is domain.CheckResult.VERIFIED:
            assert record is not None
            if self._guard is not None and not record.is_test:
                self._guard.verified(account.id, record.destination, record.country_code)
            return record
        raise _check_error(result, record)

    async def get(self, account: Account, verification_id: str) -> domain.VerificationRecord:
        record = await self._store.get_verification(account.id, _verification_id(verification_id))
        if record is None:
            raise VerificationNotFoundError("verificationId is invalid")
        return record

    async def timeline(
        self, account: Account, verification_id: str
    ) -> tuple[domain.VerificationRecord, list[MessageRecord], list[dict[str, Any]]]:
        record = await self.get(account, verification_id)
        sends, checks = await self._store.timeline(account.id, record.id)
        return record, sends, checks

    async def cancel(self, account: Account, verification_id: str) -> domain.VerificationRecord:
        record = await self.get(account, verification_id)
        cancelled = await self._store.cancel_verification(account.id, record.id, self._clock.now())
        if cancelled is None:
            raise _check_error(_ended_result(record, self._clock.now()), record)
        return cancelled

    async def expire_due(self) -> list[domain.VerificationRecord]:
        return await self._store.expire_due(self._clock.now())


def _normalised_address(email: str | None) -> str:
    """One address, one set of limits: `Ana@Example.com` and `ana@example.com` are one inbox
    for every mail system in practice."""
    assert email is not None
    return email.strip().lower()


def _email_only_fallback(plan: tuple[Channel, ...], *, explicit: bool) -> tuple[Channel, ...]:
    """Without a number only e-mail can follow: an asked-for phone channel is an error, the
    account's default plan keeps its e-mail steps only."""
    phone_channels = [c for c in plan if c is not Channel.EMAIL]
    if explicit and phone_channels:
        raise InvalidRequestError(
            f"mobileNumber is required for the fallback channel {phone_channels[0].value}"
        )
    return tuple(c for c in plan if c is Channel.EMAIL)


def _check_language(lang_id: str | None) -> None:
    if lang_id and lang_id.strip().lower() not in SUPPORTED_LANGUAGES:
        raise InvalidRequestError(f"langId '{lang_id}' is not supported; only 'en' for now")


def _verification_id(raw: str) -> int:
    value = raw.strip()
    if not value.isdigit() or len(value) > 19:
        raise VerificationNotFoundError("verificationId is invalid")
    number = int(value)
    if number > 2**63 - 1:
        raise VerificationNotFoundError("verificationId is invalid")
    return number


def _ended_result(record: domain.VerificationRecord, now: datetime) -> domain.CheckResult:
    status = record.effective_status(now)
    return {
        domain.VerificationStatus.VERIFIED: domain.CheckResult.ALREADY_VERIFIED,
        domain.VerificationStatus.FAILED: domain.CheckResult.FAILED,
    }.get(status, domain.CheckResult.EXPIRED)


def _check_error(result: domain.CheckResult, record: domain.VerificationRecord | None) -> Exception:
    if result is domain.CheckResult.NOT_FOUND or record is None:
        return VerificationNotFoundError("verificationId is invalid")
    if result is domain.CheckResult.WRONG_CODE:
        left = max(0, record.max_attempts - record.attempts)
        if left == 0:
            return WrongCodeError(
                "the code is wrong; no attempts left, the verification has failed"
            )
        return WrongCodeError(f"the code is wrong; {left} attempt{'s' if left != 1 else ''} left")
    if result is domain.CheckResult.ALREADY_VERIFIED:
        return AlreadyVerifiedError("this verification is already completed")
    if result is domain.CheckResult.FAILED:
        return VerificationFailedError("too many wrong codes; request a new code")
    return VerificationExpiredError("the code has expired or was replaced; request a new code")
