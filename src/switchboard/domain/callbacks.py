"""Customer callbacks: the Message Central delivery body, verification events, retries, outcomes."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Protocol

# The statuses the spec's "SMS Callback Integration" promises, and its date format (UTC here).
DELIVERY_STATUSES = frozenset({"DELIVRD", "EXPIRED", "UNDELIV", "UNKNOWN", "REJECTD"})
CALLBACK_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

# Standard Webhooks example schedule (research WO-3): attempt n waits RETRY_DELAYS[n - 1].
RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
MAX_ATTEMPTS = len(RETRY_DELAYS)
JITTER_RATIO = 0.10
MAX_RETRY_AFTER = timedelta(hours=24)

_COUNTRY_CODE = re.compile(r"\+?([1-9][0-9]{0,2})")
_DIGITS = re.compile(r"[0-9]{1,17}")
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")
# Signed as "id.timestamp.body", so no '.'; kept to characters that are safe in a header.
_WEBHOOK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def delivery_payload(
    *,
    message_id: str,
    status: str,
    country_code: str,
    national_number: str | None,
    submitted_at: datetime,
    done_at: datetime | None,
    error_code: int = 0,
) -> dict[str, str | int | None]:
    """The callback body of the spec, key for key and in its order.

    `apiKey`, `clientId` and `countryCode` are null as in the spec's example: the country code
    travels inside `mobile` (country code + national number, digits only, no '+'). Dates are
    formatted in UTC; `mobile` is null when there is no number (an e-mail without one). Raises
    ValueError for a status the spec does not list, a malformed number or a naive datetime.
    """
    if status not in DELIVERY_STATUSES:
        raise ValueError(f"not a callback status: {status!r}")
    return {
        "apiKey": None,
        "clientId": None,
        "messageId": message_id,
        "status": status,
        "errorCode": error_code,
        "countryCode": None,
        "mobile": None
        if national_number is None
        else callback_mobile(country_code, national_number),
        "submitDate": format_callback_date(submitted_at),
        "doneDate": None if done_at is None else format_callback_date(done_at),
    }


def callback_mobile(country_code: str, national_number: str) -> str:
    """'91' (or '+91') and '9999999999' → '919999999999'."""
    country = _COUNTRY_CODE.fullmatch(country_code.strip())
    if country is None:
        raise ValueError(f"not a country calling code: {country_code!r}")
    if _DIGITS.fullmatch(national_number) is None:
        raise ValueError("the national number must be 1-17 digits")
    return country.group(1) + national_number


def format_callback_date(moment: datetime) -> str:
    return _as_utc(moment).strftime(CALLBACK_DATE_FORMAT)


def check_webhook_id(webhook_id: str) -> str:
    """The id, if it is 1-128 of [A-Za-z0-9_-]; ValueError otherwise."""
    if _WEBHOOK_ID.fullmatch(webhook_id) is None:
        raise ValueError("a webhook id is 1-128 characters of A-Z, a-z, 0-9, '_' and '-'")
    return webhook_id


def encode_payload(payload: Mapping[str, object]) -> bytes:
    """Minified JSON, ASCII only: the exact bytes that are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("ascii")


class VerificationEventType(StrEnum):
    VERIFIED = "verification.verified"
    EXPIRED = "verification.expired"
    FAILED = "verification.failed"
    FALLBACK = "verification.fallback"


@dataclass(frozen=True)
class VerificationEvent:
    """Something that happened to a verification; by construction it cannot carry the code.

    `event_id` becomes the `webhook-id`: stable across retries, see `check_webhook_id`.
    `sequence` increases per verification, because deliveries may arrive out of order.
    `next_channel` is set for FALLBACK only: the channel the next code goes out on.
    """

    event_id: str
    type: VerificationEventType
    occurred_at: datetime
    sequence: int
    verification_id: str
    customer_id: str
    country_code: str
    national_number: str
    channel: str
    next_channel: str | None = None

    def __post_init__(self) -> None:
        check_webhook_id(self.event_id)
        if self.sequence < 0:
            raise ValueError("sequence must not be negative")
        _as_utc(self.occurred_at)
        if (self.type is VerificationEventType.FALLBACK) != (self.next_channel is not None):
            raise ValueError("next_channel is required for a fallback event and only for it")


def verification_event_payload(event: VerificationEvent) -> dict[str, object]:
    """A Standard Webhooks body: {id, type, timestamp, sequence, data}."""
    data: dict[str, object] = {
        "verificationId": event.verification_id,
        "customerId": event.customer_id,
        # null for an e-mailed code sent to an address alone, as in delivery_payload
        "mobile": callback_mobile(event.country_code, event.national_number)
        if event.national_number
        else None,
        "flowType": event.channel,
    }
    if event.next_channel is not None:
        data["nextFlowType"] = event.next_channel
    return {
        "id": event.event_id,
        "type": event.type.value,
        "timestamp": format_event_timestamp(event.occurred_at),
        "sequence": event.sequence,
        "data": data,
    }


def format_event_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as in the Standard Webhooks examples."""
    utc = _as_utc(moment)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class RandomSource(Protocol):
    """`random.Random` and `random.SystemRandom` fit; tests pass a seeded or scripted one."""

    def random(self) -> float:
        """A float in [0, 1)."""
        ...


def retry_delay(
    attempts_made: int, random: RandomSource, *, retry_after: timedelta | None = None
) -> timedelta | None:
    """How long to wait before the next attempt, or None when the delivery is dead-lettered.

    The scheduled delay gets ±10% jitter; a receiver's Retry-After (already capped by
    `classify_response`) is a floor, never a reason to come back sooner.
    """
    if attempts_made < 0:
        raise ValueError("attempts_made must not be negative")
    if attempts_made >= MAX_ATTEMPTS:
        return None
    jitter = 1.0 + JITTER_RATIO * (2.0 * random.random() - 1.0)
    delay = RETRY_DELAYS[attempts_made] * jitter
    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay


class Action(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DISABLE_ENDPOINT = "disable_endpoint"
    REFUSED = "refused"  # the receiver refused this record for good: dead, not retried


@dataclass(frozen=True)
class Outcome:
    """What one attempt means; `retry_after` is the receiver's requested delay, capped at 24 h."""

    action: Action
    reason: str
    retry_after: timedelta | None = None


def classify_response(
    status_code: int | None, retry_after_header: str | None = None, *, now: datetime | None = None
) -> Outcome:
    """Map an attempt's HTTP status (None: timeout or network error) to what happens next.

    2xx is delivered. 3xx is a failure and is never followed. 410 disables the endpoint.
    429 and 5xx retry and honour Retry-After (seconds, or an HTTP date when `now` is given).
    Anything else retries on the schedule.
    """
    if status_code is None:
        return Outcome(Action.RETRY, "no response")
    if 200 <= status_code < 300:
        return Outcome(Action.DELIVERED, f"HTTP {status_code}")
    if 300 <= status_code < 400:
        return Outcome(Action.RETRY, f"HTTP {status_code}: redirects are not followed")
    if status_code == 410:
        return Outcome(Action.DISABLE_ENDPOINT, "HTTP 410: the endpoint is gone")
    if status_code == 429 or 500 <= status_code < 600:
        return Outcome(
            Action.RETRY, f"HTTP {status_code}", parse_retry_after(retry_after_header, now=now)
        )
    return Outcome(Action.RETRY, f"HTTP {status_code}")


def parse_retry_after(header: str | None, *, now: datetime | None = None) -> timedelta | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP date; capped at 24 h; None when unusable."""
    if header is None:
        return None
    value = header.strip()
    if _DELTA_SECONDS.fullmatch(value):
        delay = timedelta(seconds=int(value))
    elif now is None:
        return None
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            return None
        delay = moment - _as_utc(now)
    if delay <= timedelta(0):
        return None
    return min(delay, MAX_RETRY_AFTER)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
    return moment.astimezone(UTC)


# -- deliveries: one row per event, retried until delivered or dead-lettered ------------------

MESSAGE_STATUS_EVENT = "message.status"
# Reports for a partner's own callback URL (kept on the row, unsigned), several per POST.
CLEVERTAP_REPORT_EVENT = "clevertap.report"
BATCHED_EVENTS = frozenset({CLEVERTAP_REPORT_EVENT})
VERIFICATION_EVENTS = "verification"  # the subscription that adds VerificationEventType events
WALLET_EVENTS = "wallet"  # the subscription that adds wallet.low_balance (ADR 0008)
EVENT_SUBSCRIPTIONS = frozenset({VERIFICATION_EVENTS, WALLET_EVENTS})
ATTEMPT_HISTORY = 5  # attempts kept per delivery (research WO-7)


class DeliveryState(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    DEAD = "DEAD"


def new_webhook_id() -> str:
    """A fresh `webhook-id`: `msg_` and 32 hex digits."""
    return "msg_" + secrets.token_hex(16)


def callback_error_code(error_code: str | None) -> int:
    """The spec's numeric `errorCode`: a provider code made of digits as its number, else 0.

    SMPP receipts carry `err:` as decimal digits; text codes (sandbox, DSN `5.1.1`) have no
    number in the spec's vocabulary, and the status already says what happened.
    """
    if error_code is None or not error_code.isdigit() or len(error_code) > 9:
        return 0
    return int(error_code)


def national_number(destination: str, country_code: str) -> str | None:
    """'+919999999999' with '91' → '9999999999'; None for an e-mail address or a mismatch."""
    prefix = "+" + country_code
    rest = destination.removeprefix(prefix)
    if not country_code or rest == destination or not rest.isdigit():
        return None
    return rest


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackEndpoint:
    """An account's callback: its URL, signing secrets, event subscription and disabled state."""

    account_id: str
    url: str | None
    secret: str | None
    previous_secret: str | None
    rotated_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    events: frozenset[str]

    def signing_secrets(self, now: datetime, overlap: timedelta) -> tuple[str, ...]:
        """The secrets that sign now: the current one, and the previous one for `overlap`
        after a rotation, so a receiver that has not switched yet still verifies."""
        if self.secret is None:
            return ()
        if (
            self.previous_secret is not None
            and self.rotated_at is not None
            and now < self.rotated_at + overlap
        ):
            return (self.secret, self.previous_secret)
        return (self.secret,)

    @property
    def active(self) -> bool:
        return self.url is not None and self.secret is not None and self.disabled_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    """One attempt as kept in a delivery's history; `error` is short and safe to show."""

    attempt: int
    at: datetime
    latency_ms: int
    status_code: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookDelivery:
    id: str  # the webhook-id
    account_id: str
    event_type: str
    message_id: str | None
    verification_id: int | None
    url: str
    payload: str
    status: DeliveryState
    attempts: int  # in the current schedule; a replay starts a new one
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    dead_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: int | None
    replays: int
    recent_attempts: tuple[AttemptRecord, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DueDelivery:
    """A claimed delivery with what sending it needs; `url` None: the account has none now."""

    id: str
    account_id: str
    payload: bytes
    attempts: int
    url: str | None
    signing_secrets: tuple[str, ...]
    endpoint_disabled: bool
    history: tuple[AttemptRecord, ...] = ()  # the attempts kept so far, oldest first
    event_type: str = MESSAGE_STATUS_EVENT

    @property
    def endpoint_key(self) -> str:
        """What concurrency is counted per: the account's callback, or a batched kind's URL
        (a space never occurs in an account id)."""
        if self.event_type in BATCHED_EVENTS:
            return f"{self.account_id} {self.event_type}"
        return self.account_id


class BatchFormat(Protocol):
    """How deliveries of a batched event type share one POST (e.g. CleverTap's reports)."""

    max_batch: int

    def encode(self, payloads: Sequence[bytes]) -> bytes:
        """One body for the stored payloads, in their order."""
        ...

    def outcomes(
        self, status_code: int | None, body: bytes, payloads: Sequence[bytes]
    ) -> list[Outcome] | None:
        """Per payload, what the answer means; None: the answer is about the whole POST
        (classified as any callback's, except that it never disables an endpoint)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """One attempt of a claimed delivery and what follows it, to be written with others.

    `next_attempt_at` is set for PENDING only; `disable_endpoint` (a reason) also disables
    the account's endpoint, e.g. after a 410.
    """

    delivery: DueDelivery
    attempt: AttemptRecord
    state: DeliveryState
    url: str
    next_attempt_at: datetime | None = None
    disable_endpoint: str | None = None
