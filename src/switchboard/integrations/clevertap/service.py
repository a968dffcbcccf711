"""CleverTap's sends (single or batched records) turned into MessageNow sends, and its settings."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import phonenumbers

from switchboard.callbacks.ssrf import DestinationError
from switchboard.clock import Clock
from switchboard.domain.accounts import Account
from switchboard.domain.phone import normalise_country_code
from switchboard.errors import DuplicateResourceError, InvalidRequestError, SwitchboardError
from switchboard.integrations.clevertap.credentials import CleverTapCredentials
from switchboard.integrations.clevertap.store import (
    CLIENT_REF_PREFIX,
    CleverTapSettings,
    CleverTapStore,
    EarlierRecord,
    QueuedMessage,
    SentRecord,
)
from switchboard.services.accounts import AccountService
from switchboard.services.messaging import MessageRequest, MessagingService

MAX_MID_CHARS = 4096  # CleverTap's $$MessageID runs to ~100 characters; ≥ 256 must pass
MAX_URL_CHARS = 2048
MAX_REPLY_NUMBERS = 50
# CleverTap's CRM traffic is campaign and journey messages, not OTPs (issue #13)
DEFAULT_MESSAGE_TYPE = "TRANSACTIONAL"
_REQUIRED = ("mobileNumber", "messageText", "mid")
_PUNCTUATION = str.maketrans("", "", " -().")

# A resend of a mid whose first record is still being queued waits for its message this long
# (polling, from _FIRST_POLL_S doubling to _MAX_POLL_S); a record still without one after
# STALE_AFTER was left by a process that died, and a resend then settles it.
WAIT_S = 5.0
STALE_AFTER = timedelta(minutes=5)
_FIRST_POLL_S, _MAX_POLL_S = 0.01, 0.25
_ROUNDS = 3  # stores of one record: the first, and again after an earlier record vanished
_STILL_QUEUING = DuplicateResourceError(
    "a message with this mid is still being queued; send it again later"
)

CheckUrl = Callable[[str], Awaitable[object]]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordResult:
    """What became of one record: a queued message, or the error that refused it."""

    index: int
    mid: str | None
    message_id: str | None = None
    verification_id: int | None = None
    transaction_id: str | None = None
    mobile_number: str | None = None
    error: SwitchboardError | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    batched: bool
    results: list[RecordResult]


@dataclass(frozen=True, slots=True)
class _Pending:
    index: int
    request: MessageRequest
    sent: SentRecord


def _replayed(pending: _Pending, message: QueuedMessage) -> RecordResult:
    return RecordResult(
        index=pending.index, mid=pending.sent.mid, message_id=message.message_id,
        verification_id=message.verification_id, transaction_id=message.transaction_id,
        mobile_number=message.mobile_number,
    )  # fmt: skip


class CleverTapService:
    def __init__(
        self,
        store: CleverTapStore,
        messaging: MessagingService,
        accounts: AccountService,
        clock: Clock,
        *,
        credentials: CleverTapCredentials,
        check_url: CheckUrl,
        default_country_code: str,
        max_records: int,
        wait_s: float = WAIT_S,
        stale_after: timedelta = STALE_AFTER,
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._messaging = messaging
        self._accounts = accounts
        self._clock = clock
        self._check_url = check_url
        self._default_country = default_country_code
        self._max_records = max_records
        self._wait_s = wait_s
        self._stale_after = stale_after

    # -- sends ------------------------------------------------------------------------------

    async def authenticate(
        self,
        *,
        customer_id: str | None,
        email: str | None,
        password: str | None,
        authorization: str | None,
    ) -> Account:
        """CleverTap's header pairs, or a Bearer integration key; 501 for every failure."""
        return await self._credentials.authenticate(
            customer_id=customer_id, email=email, password=password, authorization=authorization
        )

    async def send(
        self, account: Account, body: object, *, clevertap_account: str | None = None
    ) -> SendResult:
        """Queue each record of CleverTap's body; one bad record never refuses the others.

        `body` is the parsed JSON: one record (an object), a JSON array of records, or an object
        whose one array-valued key holds them (its other keys apply to every record, as a
        template such as `{"senderId":"…","msgs":[…]}` gives them). Raises InvalidRequestError
        for a body that holds no record, or more than the limit.
        """
        records, batched = self._split(body)
        settings = await self._store.get_settings(account.id)
        country = (settings.default_country_code if settings else None) or self._default_country
        prepared: list[_Pending | RecordResult] = []
        now = self._clock.now()
        for index, record in enumerate(records):
            try:
                request, mid, destination = self._request(record, country)
            except SwitchboardError as exc:
                prepared.append(RecordResult(index=index, mid=_mid_of(record), error=exc))
                continue
            ref = secrets.token_hex(16)
            request = replace(request, client_ref=CLIENT_REF_PREFIX + ref)
            sent = SentRecord(
                ref=ref, account_id=account.id, mid=mid,
                clevertap_account=(clevertap_account or "").strip()[:100] or None,
                destination=destination, created_at=now,
            )  # fmt: skip
            prepared.append(_Pending(index, request, sent))
        queued = await self._queue(account, [p for p in prepared if isinstance(p, _Pending)])
        results = [p if isinstance(p, RecordResult) else queued[p.index] for p in prepared]
        return SendResult(batched=batched, results=results)

    async def _queue(self, account: Account, pending: list[_Pending]) -> dict[int, RecordResult]:
        """Queue each record's message, unless its mid has a record already (a resend after a
        lost answer, a concurrent copy, a repeat in the batch): that record's message answers
        it, and nothing is sent again. Records are stored before their messages exist, so a
        receipt always finds its mid."""
        results: dict[int, RecordResult] = {}
        todo = pending
        for _ in range(_ROUNDS):
            if not todo:
                break
            taken = await self._store.remember([p.sent for p in todo])
            results.update(
                await self._send_all(account, [p for p in todo if p.sent.ref not in taken])
            )
            todo = await self._answer_earlier(
                account, [(p, taken[p.sent.ref]) for p in todo if p.sent.ref in taken], results
            )
        for p in todo:
            results[p.index] = RecordResult(index=p.index, mid=p.sent.mid, error=_STILL_QUEUING)
        return results

    async def _send_all(self, account: Account, mine: list[_Pending]) -> dict[int, RecordResult]:
        outcomes = await asyncio.gather(*(self._send_one(account, p) for p in mine))
        await self._store.settle(
            [
                (p.sent.ref, outcome.message_id)
                for p, outcome in zip(mine, outcomes, strict=True)
                if outcome.message_id is not None
            ]
        )
        await self._store.forget(
            [p.sent.ref for p, outcome in zip(mine, outcomes, strict=True) if outcome.error]
        )
        return {outcome.index: outcome for outcome in outcomes}

    async def _answer_earlier(
        self,
        account: Account,
        waiting: list[tuple[_Pending, EarlierRecord | None]],
        results: dict[int, RecordResult],
    ) -> list[_Pending]:
        """Answer each record with its earlier record's message, waiting (bounded) for one
        still being queued. Returns the records to store again: their earlier record is gone
        (its message was refused), or was left behind by a process that died."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        pause = _FIRST_POLL_S
        again: list[_Pending] = []
        while True:
            still: list[tuple[_Pending, EarlierRecord]] = []
            for p, held in waiting:
                if held is None:
                    again.append(p)
                elif held.message is not None:
                    results[p.index] = _replayed(p, held.message)
                else:
                    still.append((p, held))
            if not still or loop.time() >= deadline:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_POLL_S)
            now_held = await self._store.earlier(account.id, [p.sent.mid for p, _ in still])
            waiting = [(p, now_held.get(p.sent.mid)) for p, _ in still]
        now = self._clock.now()
        for p, held in still:
            if now - held.created_at < self._stale_after:
                results[p.index] = RecordResult(index=p.index, mid=p.sent.mid, error=_STILL_QUEUING)
                continue
            recovered = await self._store.recover(account.id, held.ref)
            if recovered is None or recovered.message is None:
                again.append(p)
            else:
                results[p.index] = _replayed(p, recovered.message)
        return again

    async def _send_one(self, account: Account, p: _Pending) -> RecordResult:
        try:
            accepted = await self._messaging.send(account, p.request)
        except SwitchboardError as exc:
            return RecordResult(index=p.index, mid=p.sent.mid, error=exc)
        return RecordResult(
            index=p.index, mid=p.sent.mid, message_id=accepted.message_id,
            verification_id=accepted.numeric_id, transaction_id=accepted.transaction_id,
            mobile_number=accepted.mobile_number,
        )  # fmt: skip

    def _split(self, body: object) -> tuple[list[Any], bool]:
        if isinstance(body, list):
            records, batched = body, True
        elif isinstance(body, dict):
            arrays = [key for key, value in body.items() if isinstance(value, list)]
            if _get(body, "mobileNumber") is None and len(arrays) == 1:
                shared = {k: v for k, v in body.items() if k != arrays[0]}
                records = [
                    {**shared, **item} if isinstance(item, dict) else item
                    for item in body[arrays[0]]
                ]
                batched = True
            else:
                records, batched = [body], False
        else:
            raise InvalidRequestError(
                "the body must be a JSON object (one message) or an array of them"
            )
        if not records:
            raise InvalidRequestError("the batch holds no records")
        if len(records) > self._max_records:
            raise InvalidRequestError(
                f"a batch holds at most {self._max_records} records; this one has {len(records)}"
            )
        return records, batched

    def _request(self, record: Any, country: str) -> tuple[MessageRequest, str, str]:
        if not isinstance(record, dict):
            raise InvalidRequestError("each record must be a JSON object")
        missing = [key for key in _REQUIRED if _text(_get(record, key)) is None]
        if missing:
            raise InvalidRequestError(f"missing key: {', '.join(missing)}")
        mid = _text(_get(record, "mid"))
        assert mid is not None
        if len(mid) > MAX_MID_CHARS:
            raise InvalidRequestError(f"mid is longer than {MAX_MID_CHARS} characters")
        for key in ("flowType", "type"):
            value = _text(_get(record, key))
            if value is not None and value.upper() != "SMS":
                raise InvalidRequestError(f"{key} must be SMS on this endpoint, not '{value}'")
        country_code, national = resolve_number(_text(_get(record, "mobileNumber")) or "", country)
        request = MessageRequest(
            flow_type="SMS",
            message=_text(_get(record, "messageText")),
            sender_id=_text(_get(record, "senderId")),
            message_type=_text(_get(record, "messageType")) or DEFAULT_MESSAGE_TYPE,
            template_id=_text(_get(record, "templateId")),
            entity_id=_text(_get(record, "entityId")),
            country_code=country_code,
            mobile_number=national,
        )
        return request, mid, country_code + national

    # -- settings ---------------------------------------------------------------------------

    async def settings(self, account_id: str) -> CleverTapSettings:
        await self._accounts.get(account_id)  # NotFoundError for an unknown customer
        return await self._store.get_settings(account_id) or CleverTapSettings(
            account_id=account_id
        )

    async def configure(
        self,
        account_id: str,
        *,
        callback_url: str | object | None = ...,
        default_country_code: str | object | None = ...,
        reply_numbers: Sequence[str] | object = ...,
    ) -> CleverTapSettings:
        """Change what is given (`...`: keep); an empty URL or country removes it. The callback
        URL passes the same SSRF rules as the customer's own callback. `reply_numbers` (E.164,
        the customer's own numbers) replaces the list whose inbound messages are forwarded."""
        current = await self.settings(account_id)
        url, country = current.callback_url, current.default_country_code
        numbers = current.reply_numbers
        if reply_numbers is not ...:
            assert isinstance(reply_numbers, Sequence)
            numbers = tuple(sorted({_reply_number(str(n)) for n in reply_numbers}))
            if len(numbers) > MAX_REPLY_NUMBERS:
                raise InvalidRequestError(f"at most {MAX_REPLY_NUMBERS} reply numbers")
        if callback_url is not ...:
            url = (str(callback_url).strip() if callback_url is not None else "") or None
            if url is not None:
                await self._check(url)
        if default_country_code is not ...:
            raw = str(default_country_code or "").strip()
            country = normalise_country_code(raw) if raw else None
        updated = CleverTapSettings(
            account_id=account_id,
            callback_url=url,
            default_country_code=country,
            reply_numbers=numbers,
        )
        await self._store.save_settings(updated, self._clock.now())
        return updated

    async def _check(self, url: str) -> None:
        if len(url) > MAX_URL_CHARS:
            raise InvalidRequestError(f"the callback URL is longer than {MAX_URL_CHARS}")
        try:
            await self._check_url(url)
        except DestinationError as exc:
            raise InvalidRequestError(f"callback URL refused: {exc.reason}") from None


def resolve_number(raw: str, default_country: str) -> tuple[str, str]:
    """$$To as CleverTap renders it → (country code, national number).

    `+<E.164>` and `00<E.164>` carry their country. Plain digits are read in the default
    country's favour: its code followed by a valid national number (CleverTap's usual
    919876543210), else a valid national number of it, else an international number without
    '+'. Raises InvalidRequestError when none is valid.
    """
    text = raw.strip().translate(_PUNCTUATION)
    if text.startswith("00"):
        text = "+" + text[2:]
    digits = text.removeprefix("+")
    if not digits or not digits.isdigit() or len(digits) > 17:
        raise InvalidRequestError(f"mobileNumber '{raw}' must contain digits only")
    if text.startswith("+"):
        candidates = [digits]
    else:
        candidates = [f"{default_country}{digits.lstrip('0')}", digits]
        if default_country and digits.startswith(default_country):
            candidates.insert(0, digits)
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse("+" + candidate)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return str(parsed.country_code), str(parsed.national_number)
    raise InvalidRequestError(f"mobileNumber '{raw}' is not a valid number")


def _reply_number(raw: str) -> str:
    """A number of the customer's, as inbound messages name it: digits of the E.164 form, or
    a short code (3-8 digits) as is."""
    text = raw.strip().translate(_PUNCTUATION).removeprefix("+")
    if text.isdigit() and 3 <= len(text) <= 8:
        return text
    country, national = resolve_number("+" + text, "")
    return country + national


def _get(record: Mapping[str, Any], key: str) -> Any:
    """A record's value for `key`, the name matched case-insensitively (as our other params)."""
    if key in record:
        return record[key]
    lowered = key.lower()
    for name, value in record.items():
        if isinstance(name, str) and name.lower() == lowered:
            return value
    return None


def _text(value: Any) -> str | None:
    """A scalar as text ('' and unrendered null → None); objects and arrays are not text."""
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value)
    return text if text.strip() else None


def _mid_of(record: Any) -> str | None:
    return _text(_get(record, "mid")) if isinstance(record, dict) else None


def settings_view(settings: CleverTapSettings) -> dict[str, Any]:
    return {
        "customerId": settings.account_id,
        "callbackUrl": settings.callback_url,
        "defaultCountryCode": settings.default_country_code,
        "replyNumbers": ["+" + n if len(n) > 8 else n for n in settings.reply_numbers],
    }
