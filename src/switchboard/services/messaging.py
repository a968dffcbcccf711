"""MessageNow: one message, the same text to a list, or per-row texts from an .xlsx campaign."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any, Final, Protocol

from switchboard.clock import Clock
from switchboard.config import MessagingSettings
from switchboard.domain import recipients, schedule, templating
from switchboard.domain.accounts import Account
from switchboard.domain.campaigns import CampaignRecord
from switchboard.domain.messages import (
    Channel,
    MessageRecord,
    MessageStatus,
    MessageType,
    parse_flow_type,
)
from switchboard.domain.phone import parse_phone
from switchboard.domain.pricing import Billable, billable_units
from switchboard.domain.verification import new_verification_id
from switchboard.errors import InvalidRequestError, NotFoundError
from switchboard.ingest.xlsx import UploadLimits, open_recipient_sheet
from switchboard.observability import get_logger
from switchboard.services.campaign_file import (
    CampaignFileReader,
    FileOutcome,
    FileRow,
    TextRules,
    TextSummary,
    summarise,
)
from switchboard.storage.base import MessagingStore

log = get_logger("switchboard.messaging")

# at most 254 characters (RFC 5321 path limit): longer ones would not fit the columns
_EMAIL = re.compile(r"^(?=.{3,254}$)[^@\s]+@[^@\s]+\.[^@\s]+$")
_ALPHANUMERIC_SENDER = re.compile(r"^[A-Za-z0-9 ._-]{1,11}$")
_NUMERIC_SENDER = re.compile(r"^\+?[0-9]{1,15}$")
_PREVIEW_ROWS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRequest:
    """A MessageNow send as given: strings, unvalidated."""

    flow_type: str | None
    message: str | None
    sender_id: str | None = None
    message_type: str | None = None
    template_id: str | None = None
    entity_id: str | None = None
    country_code: str | None = None
    mobile_number: str | None = None
    phone_numbers: str | None = None
    email: str | None = None
    subject: str | None = None
    schedule_time: str | None = None
    client_ref: str | None = None
    dry_run: bool = False
    # a campaign id chosen by the caller (a UUID), so it can follow the staging while the
    # upload request is still running (the console's progress bar); new when None
    campaign_id: str | None = None


@dataclass(slots=True, kw_only=True)
class Accepted:
    """What the send API reports back."""

    numeric_id: int
    transaction_id: str
    message_id: str | None = None
    campaign_id: str | None = None
    mobile_number: str | None = None
    total: int = 1
    accepted: int = 1
    invalid: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    scheduled_at: datetime | None = None
    preview: list[TextSummary] = field(default_factory=list)
    dry_run: bool = False
    price: int | None = None  # a dry run's quote in minor units, while billing is on


_Row = FileRow


@dataclass(frozen=True, slots=True)
class PersonalText:
    """One recipient of a campaign whose texts the caller rendered (a CRM's own fields)."""

    e164: str
    text: str


class PriceQuoter(Protocol):
    async def quote(
        self,
        account_id: str,
        items: Sequence[Billable],
        *,
        volume_offset: Mapping[Channel, int] | None = None,
    ) -> int | None:
        """What `items` would be charged now; None while billing is off."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class _Common:
    channel: Channel
    message_type: MessageType
    sender: str | None
    template: str
    dlt_entity_id: str | None
    dlt_template_id: str | None
    dlt_text: str | None
    not_before: datetime
    scheduled: bool
    subject: str | None
    client_ref: str | None


class MessagingService:
    def __init__(
        self,
        store: MessagingStore,
        clock: Clock,
        settings: MessagingSettings,
        *,
        on_queued: Callable[[], None] = lambda: None,
        pricing: PriceQuoter | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._on_queued = on_queued
        self._pricing = pricing

    async def _quote(
        self,
        account: Account,
        common: _Common,
        rows: Sequence[_Row],
        offset: dict[Channel, int] | None = None,
    ) -> int | None:
        """A dry run's price of `rows`; `offset` carries the units quoted by earlier batches."""
        if self._pricing is None:
            return None
        units = [billable_units(common.channel, summary.segments) for _, _, summary in rows]
        items = [
            Billable(channel=common.channel, message_type=common.message_type, destination=d,
                     units=n)
            for (d, _, _), n in zip(rows, units, strict=True)
        ]  # fmt: skip
        price = await self._pricing.quote(account.id, items, volume_offset=offset)
        if offset is not None:
            offset[common.channel] = offset.get(common.channel, 0) + sum(units)
        return price

    # -- the send API ---------------------------------------------------------------------

    async def send(
        self, account: Account, request: MessageRequest, upload: IO[bytes] | None = None
    ) -> Accepted:
        common = self._common(account, request)
        modes = [
            bool(request.mobile_number),
            bool(request.phone_numbers),
            upload is not None,
        ]
        if common.channel is Channel.EMAIL and not any(modes[1:]):
            return await self._single_email(account, request, common)
        if sum(modes) != 1:
            raise InvalidRequestError(
                "give exactly one of mobileNumber (with countryCode), phoneNumbers or file"
            )
        if common.channel is Channel.EMAIL:
            raise InvalidRequestError("flowType EMAIL sends to one address given in email")
        if upload is not None:
            return await self._file(account, request, common, upload)
        if request.phone_numbers:
            return await self._list(account, request, common, request.phone_numbers)
        return await self._single(account, request, common)

    def _common(self, account: Account, request: MessageRequest) -> _Common:
        channel = parse_flow_type(request.flow_type)
        try:
            message_type = MessageType.parse(request.message_type)
        except ValueError:
            raise InvalidRequestError(
                f"messageType '{request.message_type}' is not one of OTP, TRANSACTION, "
                "TRANSACTIONAL, PROMOTIONAL"
            ) from None
        text = request.message or ""
        if not text.strip():
            raise InvalidRequestError("message is required")
        sender = (request.sender_id or "").strip() or None
        if channel is Channel.SMS:
            if sender is None:
                raise InvalidRequestError("senderId is required for SMS")
            if not (_ALPHANUMERIC_SENDER.match(sender) or _NUMERIC_SENDER.match(sender)):
                raise InvalidRequestError(
                    "senderId must be up to 11 letters/digits or a number of up to 15 digits"
                )
        if bool(request.template_id) != bool(request.entity_id):
            raise InvalidRequestError("templateId and entityId go together: give both or neither")
        registered: dict[str, str] = account.settings.get("dlt_templates") or {}
        dlt_text = registered.get(request.template_id) if request.template_id else None
        now = self._clock.now()
        at = schedule.parse_schedule_time(
            request.schedule_time, now, max_days=self._settings.max_schedule_days
        )
        not_before = at or now
        if message_type is MessageType.PROMOTIONAL:
            not_before = schedule.next_allowed(
                not_before,
                self._settings.promotional_window,
                self._settings.promotional_timezone,
            )
        if request.client_ref and len(request.client_ref) > 255:
            raise InvalidRequestError("clientRef is longer than 255 characters")
        return _Common(
            channel=channel,
            message_type=message_type,
            sender=sender if channel is Channel.SMS else None,
            template=text,
            dlt_entity_id=request.entity_id,
            dlt_template_id=request.template_id,
            dlt_text=dlt_text,
            not_before=not_before,
            scheduled=not_before > now,
            subject=(request.subject or "").strip() or None,
            client_ref=request.client_ref,
        )

    def _summarise(self, common: _Common, text: str) -> TextSummary:
        return summarise(self._rules(common), text)

    def _rules(self, common: _Common) -> TextRules:
        return TextRules(
            sms=common.channel is Channel.SMS,
            max_segments=self._settings.max_segments,
            dlt_text=common.dlt_text,
            dlt_template_id=common.dlt_template_id,
        )

    def _message(
        self,
        account: Account,
        common: _Common,
        *,
        destination: str,
        country_code: str,
        summary: TextSummary,
        transaction_id: str,
        campaign_id: str | None = None,
        status: MessageStatus = MessageStatus.QUEUED,
    ) -> MessageRecord:
        now = self._clock.now()
        return MessageRecord(
            id=str(uuid.uuid4()),
            numeric_id=new_verification_id(),
            transaction_id=transaction_id,
            account_id=account.id,
            channel=common.channel,
            message_type=common.message_type,
            status=status,
            destination=destination,
            country_code=country_code,
            sender=common.sender,
            body=summary.text,
            subject=common.subject,
            encoding=summary.encoding,
            segments=summary.segments,
            campaign_id=campaign_id,
            dlt_entity_id=common.dlt_entity_id,
            dlt_template_id=common.dlt_template_id,
            client_ref=common.client_ref,
            not_before=common.not_before,
            created_at=now,
        )

    async def _single(self, account: Account, request: MessageRequest, common: _Common) -> Accepted:
        phone = parse_phone(request.country_code, request.mobile_number)
        summary = self._summarise(common, common.template)
        accepted = Accepted(
            numeric_id=0,
            transaction_id=str(uuid.uuid4()),
            mobile_number=phone.national_number,
            preview=[summary],
            scheduled_at=common.not_before if common.scheduled else None,
            dry_run=request.dry_run,
        )
        if request.dry_run:
            accepted.price = await self._quote(
                account, common, [(phone.e164, phone.country_code, summary)]
            )
            return accepted
        message = self._message(
            account, common, destination=phone.e164, country_code=phone.country_code,
            summary=summary, transaction_id=accepted.transaction_id,
        )  # fmt: skip
        await self._store.accept_messages([message])
        self._on_queued()
        accepted.numeric_id = message.numeric_id
        accepted.message_id = message.id
        return accepted

    async def _single_email(
        self, account: Account, request: MessageRequest, common: _Common
    ) -> Accepted:
        address = (request.email or "").strip()
        if not _EMAIL.match(address):
            raise InvalidRequestError("email is required (a valid address) for flowType EMAIL")
        summary = self._summarise(common, common.template)
        accepted = Accepted(
            numeric_id=0, transaction_id=str(uuid.uuid4()), mobile_number=None,
            preview=[summary], dry_run=request.dry_run,
            scheduled_at=common.not_before if common.scheduled else None,
        )  # fmt: skip
        if request.dry_run:
            accepted.price = await self._quote(account, common, [(address, "", summary)])
            return accepted
        message = self._message(
            account, common, destination=address, country_code="",
            summary=summary, transaction_id=accepted.transaction_id,
        )  # fmt: skip
        await self._store.accept_messages([message])
        self._on_queued()
        accepted.numeric_id = message.numeric_id
        accepted.message_id = message.id
        return accepted

    def prepare(self, account: Account, request: MessageRequest) -> MessageRecord:
        """One message (to mobileNumber, or to email for EMAIL) checked and built as `send`
        would queue it, but not queued: for callers that queue it in a transaction of their
        own (an automation job marks itself sent in the same one). Raises what `send` does."""
        common = self._common(account, request)
        if common.channel is Channel.EMAIL:
            destination = (request.email or "").strip()
            if not _EMAIL.match(destination):
                raise InvalidRequestError("email is required (a valid address) for flowType EMAIL")
            country_code = ""
        else:
            phone = parse_phone(request.country_code, request.mobile_number)
            destination, country_code = phone.e164, phone.country_code
        return self._message(
            account, common, destination=destination, country_code=country_code,
            summary=self._summarise(common, common.template), transaction_id=str(uuid.uuid4()),
        )  # fmt: skip

    # -- campaigns --------------------------------------------------------------------------

    async def _list(
        self, account: Account, request: MessageRequest, common: _Common, field_value: str
    ) -> Accepted:
        def validate(country: str, national: str) -> str:
            return parse_phone(country, national).e164

        parsed = recipients.parse_phone_numbers(
            field_value, validate, max_entries=self._settings.max_list_recipients
        )
        summary = self._summarise(common, common.template)
        errors = [{"index": e.index, "value": e.raw, "reason": e.reason} for e in parsed.errors]
        rows = [(r.e164, _country_of(r.e164), summary) for r in parsed.recipients]
        total = len(parsed.recipients) + len(parsed.errors)
        return await self._campaign(
            account, request, common, "LIST", _once(rows), total_errors=errors, total=total
        )

    async def _file(
        self, account: Account, request: MessageRequest, common: _Common, upload: IO[bytes]
    ) -> Accepted:
        limits = UploadLimits(
            max_file_bytes=self._settings.max_upload_bytes,
            max_rows=self._settings.max_upload_rows,
        )
        reader = CampaignFileReader(
            upload,
            template=common.template,
            rules=self._rules(common),
            limits=limits,
            batch_size=self._settings.ingest_batch_size,
        )
        # The child starts reading while this process checks the upload and its header, so
        # a bad file is still refused before anything is staged.
        try:
            await reader.start()
            sheet = await asyncio.to_thread(open_recipient_sheet, upload, limits)
            sheet.close()
            needed = templating.placeholders(common.template)
            if needed and max(needed) > sheet.header.variable_count:
                raise InvalidRequestError(
                    f"message uses ##var{max(needed)}## but the file has "
                    f"{sheet.header.variable_count} variable column(s)"
                )
            return await self._campaign(
                account, request, common, "FILE", reader.rows(),
                total_errors=reader.outcome.errors, outcome=reader.outcome,
            )  # fmt: skip
        finally:
            await reader.close()  # also when the rows were never iterated

    async def send_texts(
        self, account: Account, request: MessageRequest, texts: Sequence[PersonalText]
    ) -> Accepted:
        """A campaign of per-recipient texts, `request.message` being their template.

        Each number and text is checked as a list send's are; the ones that fail are reported
        in `errors` (index, value, reason) and the rest are sent. `dry_run` quotes only."""
        common = self._common(account, request)
        if common.channel is not Channel.SMS:
            raise InvalidRequestError("per-recipient texts are sent as SMS")
        if len(texts) > self._settings.max_list_recipients:
            raise InvalidRequestError(
                f"at most {self._settings.max_list_recipients} recipients per campaign"
            )
        rows: list[_Row] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(texts):
            try:
                phone = parse_phone(_country_of(item.e164), item.e164)
                rows.append((phone.e164, phone.country_code, self._summarise(common, item.text)))
            except InvalidRequestError as error:
                errors.append({"index": index, "value": item.e164, "reason": error.message})
        return await self._campaign(
            account, request, common, "LIST", _once(rows), total_errors=errors, total=len(texts)
        )

    async def _stage(
        self,
        account: Account,
        request: MessageRequest,
        common: _Common,
        campaign: CampaignRecord,
        batch: list[_Row],
        quoted: list[int | None],
        offset: dict[Channel, int],
    ) -> None:
        if request.dry_run:
            quoted.append(await self._quote(account, common, batch, offset))
            return
        now = self._clock.now()
        # Ascending ids, numeric ones too (the same random values, sorted): each batch then
        # walks the unique indexes in order instead of touching their pages at random.
        fixed: dict[str, Any] = {
            "transaction_id": campaign.transaction_id,
            "account_id": account.id,
            "channel": common.channel,
            "message_type": common.message_type,
            "status": MessageStatus.HELD,
            "sender": common.sender,
            "subject": common.subject,
            "campaign_id": campaign.id,
            "dlt_entity_id": common.dlt_entity_id,
            "dlt_template_id": common.dlt_template_id,
            "client_ref": common.client_ref,
            "not_before": common.not_before,
            "created_at": now,
        }
        await self._store.stage_campaign_messages(
            [
                MessageRecord(
                    id=message_id, numeric_id=numeric_id, destination=destination,
                    country_code=country_code, body=summary.text, encoding=summary.encoding,
                    segments=summary.segments, **fixed,
                )
                for message_id, numeric_id, (destination, country_code, summary) in zip(
                    new_message_ids(len(batch), now), sorted(new_numeric_ids(len(batch))), batch,
                    strict=True,
                )
            ]
        )  # fmt: skip

    async def _campaign(
        self,
        account: Account,
        request: MessageRequest,
        common: _Common,
        source: str,
        batches: AsyncGenerator[list[_Row], None],
        *,
        total_errors: list[dict[str, Any]],
        total: int | None = None,
        outcome: FileOutcome | None = None,
    ) -> Accepted:
        now = self._clock.now()
        campaign = CampaignRecord(
            id=_campaign_id(request.campaign_id),
            numeric_id=new_verification_id(),
            transaction_id=str(uuid.uuid4()),
            account_id=account.id,
            status="STAGING",
            channel=common.channel.value,
            message_type=common.message_type.value,
            source=source,
            sender=common.sender,
            template=common.template,
            total=0,
            invalid=0,
            errors=[],
            scheduled_at=common.not_before if common.scheduled else None,
            created_at=now,
            updated_at=now,
        )
        preview: list[TextSummary] = []
        accepted = 0
        quoted: list[int | None] = []
        offset: dict[Channel, int] = {}
        if not request.dry_run:
            await self._store.create_campaign(campaign)
        try:
            async with contextlib.aclosing(batches) as ready:
                async for batch in ready:
                    preview.extend(
                        summary for _, _, summary in batch[: _PREVIEW_ROWS - len(preview)]
                    )
                    accepted += len(batch)
                    await self._stage(account, request, common, campaign, batch, quoted, offset)
        except InvalidRequestError as error:
            if not request.dry_run:
                await self._store.abort_campaign(campaign.id, error.message, self._clock.now())
            raise
        except BaseException:
            if not request.dry_run:
                await self._store.abort_campaign(campaign.id, "ingest failed", self._clock.now())
            raise
        total = total if total is not None else outcome.total if outcome else accepted
        invalid = total - accepted
        if accepted == 0:
            if not request.dry_run:
                await self._store.abort_campaign(
                    campaign.id, "no valid recipients", self._clock.now()
                )
            raise CampaignRefusedError("no valid recipients", total_errors, total)
        if not request.dry_run:
            await self._store.release_campaign(
                campaign.id, total=total, invalid=invalid, errors=total_errors,
                not_before=common.not_before, now=self._clock.now(),
            )  # fmt: skip
            self._on_queued()
        return Accepted(
            numeric_id=campaign.numeric_id,
            transaction_id=campaign.transaction_id,
            campaign_id=None if request.dry_run else campaign.id,
            total=total,
            accepted=accepted,
            invalid=invalid,
            errors=total_errors,
            scheduled_at=campaign.scheduled_at,
            preview=preview,
            dry_run=request.dry_run,
            price=None if None in quoted or not quoted else sum(q or 0 for q in quoted),
        )

    async def sweep_abandoned_campaigns(self) -> int:
        """Abort campaigns whose staging stopped (the API process died mid-upload): the
        customer never had an answer, so nothing of them is sent and their charges are
        refunded. Returns how many were aborted."""
        now = self._clock.now()
        idle_since = now - timedelta(seconds=self._settings.staging_abandoned_s)
        abandoned = await self._store.stale_campaigns(idle_since)
        for campaign_id in abandoned:
            await self._store.abort_campaign(
                campaign_id, "the upload was interrupted before it was accepted", now
            )
        if abandoned:
            log.warning("abandoned campaigns aborted", count=len(abandoned))
        return len(abandoned)

    # -- campaign queries ---------------------------------------------------------------------

    async def campaign(
        self, account: Account, campaign_id: str
    ) -> tuple[CampaignRecord, dict[str, int]]:
        record = await self._store.get_campaign(account.id, campaign_id)
        if record is None:
            raise NotFoundError(f"no campaign {campaign_id}")
        return record, await self._store.campaign_counts(campaign_id)

    def campaign_messages(self, account: Account, campaign_id: str) -> Any:
        return self._store.campaign_messages(account.id, campaign_id)

    async def cancel_campaign(self, account: Account, campaign_id: str) -> int:
        await self.campaign(account, campaign_id)
        return await self._store.cancel_campaign(account.id, campaign_id, self._clock.now())


class CampaignRefusedError(InvalidRequestError):
    """Nothing in a list or file could be sent; the per-entry reasons travel with it."""

    def __init__(self, message: str, errors: list[dict[str, Any]], total: int) -> None:
        super().__init__(message)
        self.errors = errors
        self.total = total


async def _once(rows: list[_Row]) -> AsyncGenerator[list[_Row], None]:
    yield rows


_NUMERIC_ID_SPAN: Final = 9 * 10**17
_NUMERIC_ID_BITS: Final = _NUMERIC_ID_SPAN.bit_length()


def _campaign_id(chosen: str | None) -> str:
    if chosen is None:
        return str(uuid.uuid4())
    try:
        parsed = uuid.UUID(chosen)
    except ValueError:
        parsed = None
    if parsed is None or parsed.version != 4:
        raise InvalidRequestError("campaignId must be a random (version 4) UUID")
    return str(parsed)


def new_message_ids(count: int, at: datetime) -> list[str]:
    """`count` ascending UUIDs in RFC 9562's version-7 layout, for one batch of a campaign:
    the batch's Unix time in milliseconds, an 18-bit sequence number, 56 random bits.

    Ascending keys go to the end of the primary-key index; random (version-4) keys land all
    over it, and from a few hundred thousand rows on each batch rewrote thousands of index
    pages (bench/RESULTS.md). The random bits keep ids unguessable.
    """
    if count > 1 << 18:
        raise ValueError("at most 262,144 ids per batch")
    millis = int(at.timestamp() * 1000) & ((1 << 48) - 1)
    head = (millis << 80) | (7 << 76) | (0b10 << 62)
    random = os.urandom(7 * count)
    ids: list[str] = []
    for index in range(count):
        tail = int.from_bytes(random[7 * index : 7 * index + 7], "big")
        h = f"{head | (index >> 6) << 64 | (index & 63) << 56 | tail:032x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def new_numeric_ids(count: int) -> list[int]:
    """`count` of `new_verification_id()`'s ids: uniform over the 18-digit numbers, drawn as
    `secrets.randbelow` does (60 random bits, redrawn when out of range), in bulk."""
    ids: list[int] = []
    shift = 64 - _NUMERIC_ID_BITS
    while len(ids) < count:
        raw = os.urandom(8 * (count - len(ids)) * 5 // 4 + 64)
        for start in range(0, len(raw), 8):
            value = int.from_bytes(raw[start : start + 8], "big") >> shift
            if value < _NUMERIC_ID_SPAN:
                ids.append(10**17 + value)
                if len(ids) == count:
                    break
    return ids


def _country_of(e164: str) -> str:
    import phonenumbers

    try:
        return str(phonenumbers.parse(e164).country_code)
    except phonenumbers.NumberParseException:
        raise InvalidRequestError(f"'{e164}' is not an international number") from None
