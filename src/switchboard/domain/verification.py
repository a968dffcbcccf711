"""Verifications: code generation and keyed hashing, statuses, and the outcome of a check."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from switchboard.domain.messages import Channel
from switchboard.errors import InvalidRequestError

MIN_CODE_LENGTH = 4
MAX_CODE_LENGTH = 8
MIN_TIMEOUT_S = 20
MAX_TIMEOUT_S = 600


class VerificationStatus(StrEnum):
    PENDING = "PENDING"
    VERIFIED = "VERIFIED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"  # wrong-code attempts exhausted
    CANCELLED = "CANCELLED"  # replaced by a resend, or cancelled by the customer


class CheckResult(StrEnum):
    VERIFIED = "VERIFIED"
    WRONG_CODE = "WRONG_CODE"
    FAILED = "FAILED"
    ALREADY_VERIFIED = "ALREADY_VERIFIED"
    EXPIRED = "EXPIRED"
    NOT_FOUND = "NOT_FOUND"


def generate_code(length: int) -> str:
    """A uniformly random numeric code from the OS CSPRNG; leading zeros are kept."""
    return f"{secrets.randbelow(10**length):0{length}d}"


def hash_code(pepper: bytes, verification_id: int, code: str) -> str:
    """HMAC-SHA256 over the verification id and the code, keyed with the server pepper.

    Binding the id means a code (or its digest) is worth nothing on any other verification.
    """
    message = f"{verification_id}:{code}".encode()
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


def code_matches(pepper: bytes, verification_id: int, code: str, stored_hash: str) -> bool:
    """Constant-time comparison of a submitted code against the stored digest."""
    candidate = hash_code(pepper, verification_id, code.strip())
    return hmac.compare_digest(candidate.encode(), stored_hash.encode())


def new_verification_id() -> int:
    """A random 18-digit id: numeric like the spec's `verificationId`, but not guessable."""
    return 10**17 + secrets.randbelow(9 * 10**17)


def parse_code_length(raw: str | int | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"otpLength '{raw}' must be a whole number") from None
    if not MIN_CODE_LENGTH <= value <= MAX_CODE_LENGTH:
        raise InvalidRequestError(
            f"otpLength must be between {MIN_CODE_LENGTH} and {MAX_CODE_LENGTH}, got {value}"
        )
    return value


def parse_timeout(raw: str | int | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(float(raw))
    except (TypeError, ValueError):
        raise InvalidRequestError(f"otpTimeout '{raw}' must be a number of seconds") from None
    if not MIN_TIMEOUT_S <= value <= MAX_TIMEOUT_S:
        raise InvalidRequestError(
            f"otpTimeout must be between {MIN_TIMEOUT_S} and {MAX_TIMEOUT_S} seconds, got {value}"
        )
    return value


def parse_fallback(raw: str | list[str] | None, first: Channel) -> tuple[Channel, ...]:
    """`fallback=WHATSAPP,EMAIL` → the channels tried after `first`, in order, without repeats."""
    if raw is None or raw == "":
        return ()
    items = raw if isinstance(raw, list) else raw.split(",")
    plan: list[Channel] = []
    for item in items:
        name = item.strip().upper()
        if not name:
            continue
        try:
            channel = Channel(name)
        except ValueError:
            raise InvalidRequestError(
                f"fallback channel '{item.strip()}' is not one of SMS, WHATSAPP, RCS, EMAIL"
            ) from None
        if channel != first and channel not in plan:
            plan.append(channel)
    return tuple(plan)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationRecord:
    id: int
    account_id: str
    transaction_id: str
    channel: Channel
    country_code: str
    mobile_number: str
    destination: str
    code_hash: str
    status: VerificationStatus
    attempts: int
    max_attempts: int
    timeout_s: int
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    fallback: tuple[Channel, ...]
    is_test: bool

    def effective_status(self, now: datetime) -> VerificationStatus:
        """PENDING past its expiry reads as EXPIRED, even before the sweeper records it."""
        if self.status is VerificationStatus.PENDING and now >= self.expires_at:
            return VerificationStatus.EXPIRED
        return self.status


def _duration(seconds: int) -> str:
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds} seconds"


def otp_text(code: str, brand: str, timeout_s: int, app_hash: str | None = None) -> str:
    """The message a user receives, e.g. "1234 is your verification code for Acme. It expires
    in 1 minute." An Android SMS Retriever hash, when set, ends the message on its own line."""
    text = f"{code} is your verification code for {brand}. It expires in {_duration(timeout_s)}."
    if app_hash:
        text += f"\n\n{app_hash}"
    return text


def otp_email(code: str, brand: str, timeout_s: int) -> tuple[str, str, str]:
    """Subject, plain text and HTML of an e-mailed code."""
    from html import escape

    subject = f"Your {brand} verification code"
    plain = otp_text(code, brand, timeout_s)
    html = (
        '<!doctype html><html><body style="font-family:sans-serif">'
        f"<p>Your verification code for {escape(brand)} is</p>"
        f'<p style="font-size:28px;letter-spacing:4px"><strong>{escape(code)}</strong></p>'
        f"<p>It expires in {_duration(timeout_s)}. If you did not ask for it, ignore this e-mail.</p>"
        "</body></html>"
    )
    return subject, plain, html
