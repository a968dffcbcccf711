"""The automation engine: events in, rules matched, durable jobs made, messages sent through MessageNow."""

from __future__ import annotations

import builtins
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from switchboard.automations import rules
from switchboard.automations.events import Event
from switchboard.automations.rules import (
    DEFAULTS,
    Automation,
    AutomationKind,
    EventRecord,
    Job,
    JobStatus,
)
from switchboard.automations.store import AutomationStore
from switchboard.automations.templates import Rendered, render
from switchboard.clock import Clock
from switchboard.config import AutomationSettings
from switchboard.domain.accounts import Account
from switchboard.domain.messages import Channel, MessageType
from switchboard.errors import InvalidRequestError, NotFoundError, SwitchboardError
from switchboard.observability import get_logger
from switchboard.services.accounts import AccountService
from switchboard.services.messaging import MessageRequest, MessagingService

log = get_logger("switchboard.automations")

# A job's message id is derived from the job's: the messages table's primary key is then a
# second guard that one job never makes two messages (ADR 0013).
_MESSAGE_IDS: Final = uuid.UUID("6f1c8e2a-3b0d-5c47-9a1e-5b2f7d4c8a90")
_EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_SOURCE = re.compile(r"[A-Za-z0-9_.:/@-]{1,255}")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ALPHANUMERIC_SENDER = re.compile(r"^[A-Za-z0-9 ._-]{1,11}$")
_NUMERIC_SENDER = re.compile(r"^\+?[0-9]{1,15}$")
_MAX_FIELDS_BYTES: Final = 16 * 1024
_CHANNELS: Final = (Channel.SMS, Channel.WHATSAPP)
_EDITABLE: Final = frozenset(
    {"name", "enabled", "source", "template", "sender_id", "message_type", "channel",
     "delay", "quiet_hours", "event_name"}
)  # fmt: skip


def message_id_for(job_id: str) -> str:
    return str(uuid.uuid5(_MESSAGE_IDS, job_id))


@dataclass(frozen=True, slots=True)
class Publication:
    """What one publish did: the event's id and the jobs it made (none for a duplicate)."""

    event_id: str | None
    duplicate: bool
    jobs: list[Job]


@dataclass(frozen=True, slots=True)
class Preview:
    text: str
    missing: tuple[str, ...]


class AutomationService:
    """The `EventSink` the CRM integrations publish to, and the rules' list/create/update/delete."""

    def __init__(
        self,
        store: AutomationStore,
        messaging: MessagingService,
        accounts: AccountService,
        clock: Clock,
        settings: AutomationSettings,
        *,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._messaging = messaging
        self._accounts = accounts
        self._clock = clock
        self._settings = settings
        self._on_queued = on_queued
        self._owner = f"publish-{uuid.uuid4().hex[:12]}"

    # -- rules ------------------------------------------------------------------------------

    async def list(self, account_id: str) -> list[Automation]:
        return await self._store.list_automations(account_id)

    async def get(self, account_id: str, automation_id: str) -> Automation:
        automation = await self._store.get_automation(account_id, automation_id)
        if automation is None:
            raise NotFoundError(f"no automation {automation_id}")
        return automation

    async def create(
        self, account_id: str, kind: AutomationKind | str, changes: Mapping[str, Any]
    ) -> Automation:
        """A rule of `kind`, the kind's defaults overridden by `changes` (field names of
        `Automation`: template, sender_id, delay, quiet_hours, …). Custom rules need
        `event_name` and `template`."""
        try:
            kind = AutomationKind(kind)
        except ValueError:
            names = ", ".join(k.value for k in AutomationKind)
            raise InvalidRequestError(f"kind '{kind}' is not one of {names}") from None
        now = self._clock.now()
        defaults = DEFAULTS.get(kind)
        automation = Automation(
            id=str(uuid.uuid4()),
            account_id=account_id,
            kind=kind,
            event_name=defaults.event_name if defaults else "",
            name=kind.value.replace("_", " "),
            enabled=True,
            source=None,
            template=defaults.template if defaults else "",
            sender_id=self._settings.default_sender_id,
            message_type=defaults.message_type if defaults else MessageType.TRANSACTIONAL,
            channel=Channel.SMS,
            delay=defaults.delay if defaults else timedelta(0),
            quiet_hours=defaults.quiet_hours if defaults else None,
            created_at=now,
            updated_at=now,
        )
        automation = _checked(_apply(automation, changes))
        await self._store.create_automation(automation)
        return automation

    async def install_defaults(
        self, account_id: str, *, source: str | None, sender_id: str | None = None
    ) -> builtins.list[Automation]:
        """The built-in rules for `source` (e.g. a newly installed shop), those it lacks only:
        calling it again adds nothing."""
        existing = {
            x.kind for x in await self._store.list_automations(account_id) if x.source == source
        }
        changes: dict[str, Any] = {"source": source}
        if sender_id is not None:
            changes["sender_id"] = sender_id
        return [
            await self.create(account_id, kind, changes)
            for kind in DEFAULTS
            if kind not in existing
        ]

    async def update(
        self, account_id: str, automation_id: str, changes: Mapping[str, Any]
    ) -> Automation:
        current = await self.get(account_id, automation_id)
        updated = _checked(_apply(current, changes, updated_at=self._clock.now()))
        if not await self._store.update_automation(updated):
            raise NotFoundError(f"no automation {automation_id}")
        return updated

    async def delete(self, account_id: str, automation_id: str) -> None:
        """Delete the rule; its pending jobs are cancelled, its past jobs stay listed."""
        if not await self._store.delete_automation(account_id, automation_id, self._clock.now()):
            raise NotFoundError(f"no automation {automation_id}")

    async def jobs(
        self, account_id: str, *, status: JobStatus | str | None = None, limit: int = 100
    ) -> builtins.list[Job]:
        if status is not None:
            try:
                status = JobStatus(str(status).upper())
            except ValueError:
                names = ", ".join(s.value for s in JobStatus)
                raise InvalidRequestError(f"status '{status}' is not one of {names}") from None
        return await self._store.list_jobs(account_id, status=status, limit=limit)

    def preview(self, automation: Automation, fields: Mapping[str, Any]) -> Preview:
        """The text `automation` would send for an event with `fields`, and what is missing."""
        rendered = render(automation.template, fields)
        return Preview(rendered.text, rendered.missing)

    # -- the EventSink ----------------------------------------------------------------------

    async def publish(self, event: Event) -> builtins.list[str]:
        """Jobs made for the event, by id; for each one sent at once also its message's id."""
        publication = await self.publish_event(event)
        ids: list[str] = []
        for job in publication.jobs:
            ids.append(job.id)
            if job.message_id is not None:
                ids.append(job.message_id)
        return ids

    async def publish_event(self, event: Event) -> Publication:
        """Record the event (once per (account, source, key)) with one job per matching rule,
        cancel the abandoned-checkout jobs it settles, then run the jobs due now."""
        _check_event(event)
        account = await self._accounts.get(event.account_id)
        now = self._clock.now()
        zone = self._timezone(event, account)
        context = _json_copy(event.fields)
        record = EventRecord(
            id=str(uuid.uuid4()), account_id=event.account_id, source=event.source,
            key=event.key, name=event.name, subject=event.subject, phone=event.phone,
            email=event.email, occurred_at=event.occurred_at, recorded_at=now,
        )  # fmt: skip
        matching = [
            x for x in await self._store.list_automations(account.id) if x.listens_to(event)
        ]
        jobs = [self._job(x, event, record, zone, context, now) for x in matching]
        cancel = (
            {AutomationKind.ABANDONED_CHECKOUT} if event.name in rules.CHECKOUT_CLOSERS else set()
        )
        if not await self._store.record_event(record, jobs, cancel_kinds=cancel, now=now):
            return Publication(None, True, [])
        due = [x.id for x in jobs if x.status is JobStatus.PENDING and x.due_at <= now]
        done: dict[str, Job] = {}
        if due:
            try:
                claimed = await self._store.claim_due(
                    self._owner, now, self._settings.lease_s, limit=len(due), job_ids=due
                )
                for job in claimed:
                    done[job.id] = await self._run(job, self._owner)
            except Exception:  # the jobs are stored: the runner sends them once the lease ends
                log.exception("immediate automation send failed", event_id=record.id)
        return Publication(record.id, False, [done.get(x.id, x) for x in jobs])

    async def clear_subject(self, account_id: str, subject: str) -> int:
        return await self._store.clear_subject(account_id, subject, self._clock.now())

    async def forget_recipient(
        self, account_id: str, *, phone: str | None, email: str | None
    ) -> int:
        return await self._store.forget_recipient(account_id, phone=phone, email=email)

    async def forget_source(self, account_id: str, source: str) -> int:
        """Erase what the engine holds for `source` (Shopify's shop/redact): its rules, their
        unsent jobs, its events; sent jobs stay as ids only. The rows deleted."""
        return await self._store.forget_source(account_id, source)

    async def prune_events(self) -> int:
        """Delete events older than `event_retention_days`; how many."""
        days = self._settings.event_retention_days
        return await self._store.prune_events(self._clock.now() - timedelta(days=days))

    # -- jobs -------------------------------------------------------------------------------

    async def run_due(self, owner: str, *, limit: int | None = None) -> int:
        """Lease the jobs due now and run each; how many were leased."""
        now = self._clock.now()
        claimed = await self._store.claim_due(
            owner, now, self._settings.lease_s, limit=limit or self._settings.batch_size
        )
        for job in claimed:
            try:
                await self._run(job, owner)
            except Exception:  # a database hiccup: the lease runs out and it is tried again
                log.exception("automation job failed", job_id=job.id)
        return len(claimed)

    def _timezone(self, event: Event, account: Account) -> str:
        configured = account.settings.get("timezone")
        if event.timezone:
            return event.timezone
        if isinstance(configured, str) and _is_zone(configured):
            return configured
        return self._settings.timezone

    def _job(
        self,
        automation: Automation,
        event: Event,
        record: EventRecord,
        zone: str,
        context: Mapping[str, Any],
        now: datetime,
    ) -> Job:
        # The delay counts from when the event happened (a late webhook does not add to it),
        # never from before now, nor from a future the caller's clock made up.
        start = min(event.occurred_at, now)
        due = rules.after_quiet_hours(
            max(start + automation.delay, now), automation.quiet_hours, zone
        )
        status, reason = JobStatus.PENDING, None
        if automation.channel in _CHANNELS and not event.phone:
            status, reason = JobStatus.SKIPPED, "the event has no phone number"
        elif automation.message_type is MessageType.PROMOTIONAL and event.consent is not True:
            status, reason = JobStatus.SKIPPED, "no SMS marketing consent (promotional)"
        return Job(
            id=str(uuid.uuid4()), account_id=event.account_id, automation_id=automation.id,
            kind=automation.kind, event_id=record.id, event_name=event.name,
            subject=event.subject, phone=event.phone, email=event.email, timezone=zone,
            context=context, status=status, due_at=due, reason=reason, attempts=0,
            created_at=now, updated_at=now,
        )  # fmt: skip

    async def _run(self, job: Job, owner: str) -> Job:
        """Send one leased job, or end or postpone it; returns it as it now stands."""
        now = self._clock.now()

        async def end(status: JobStatus, reason: str) -> Job:
            await self._store.complete_job(job.id, owner, status, now, reason=reason)
            return replace(job, status=status, reason=reason, updated_at=now)

        if job.attempts > self._settings.max_attempts:
            return await end(JobStatus.FAILED, f"gave up after {job.attempts - 1} attempts")
        automation = await self._store.get_automation(job.account_id, job.automation_id)
        if automation is None or not automation.enabled:
            return await end(JobStatus.CANCELLED, "the automation was deleted or disabled")
        if job.subject is not None:
            closers = {rules.SUBJECT_CLEARED}
            if job.kind is AutomationKind.ABANDONED_CHECKOUT:
                closers |= rules.CHECKOUT_CLOSERS
            if await self._store.subject_closed(job.account_id, job.subject, closers):
                return await end(JobStatus.CANCELLED, "the subject was completed or cleared")
        later = rules.after_quiet_hours(now, automation.quiet_hours, job.timezone)
        if later > now:  # a job run late (a runner down overnight) still waits out the night
            await self._store.postpone_job(job.id, owner, later, now, reason="quiet hours")
            return replace(job, due_at=later, reason="quiet hours")
        rendered = render(automation.template, job.context)
        # sent anyway (an order confirmation without a first name is still one), but noted
        note = f"rendered without {', '.join(rendered.missing)}" if rendered.missing else None
        try:
            account = await self._accounts.get(job.account_id)
            message = self._messaging.prepare(account, _request(automation, job, rendered))
            message = replace(message, id=message_id_for(job.id))
            sent = await self._store.send_job(job.id, owner, message, now, reason=note)
        except SwitchboardError as error:  # refused: bad sender, DLT text, funds, …
            return await end(JobStatus.FAILED, error.message)
        if not sent:  # cancelled meanwhile, or another runner took over an expired lease
            return job
        self._on_queued()
        return replace(
            job, status=JobStatus.SENT, message_id=message.id, reason=note, updated_at=now
        )


def _request(automation: Automation, job: Job, rendered: Rendered) -> MessageRequest:
    country_code = mobile_number = None
    if job.phone:
        parsed = phonenumbers.parse(job.phone)
        country_code, mobile_number = str(parsed.country_code), str(parsed.national_number)
    return MessageRequest(
        flow_type=automation.channel.value,
        message=rendered.text,
        sender_id=automation.sender_id,
        message_type=automation.message_type.value,
        country_code=country_code,
        mobile_number=mobile_number,
        email=job.email,
        client_ref=f"automation:{job.id}",
    )


def _apply(
    automation: Automation, changes: Mapping[str, Any], *, updated_at: datetime | None = None
) -> Automation:
    unknown = set(changes) - _EDITABLE
    if unknown:
        raise InvalidRequestError(f"unknown automation field(s): {', '.join(sorted(unknown))}")
    values = dict(changes)
    try:
        if "message_type" in values:
            values["message_type"] = MessageType.parse(values["message_type"])
        if "channel" in values:
            values["channel"] = Channel(str(values["channel"]).upper())
    except ValueError:
        raise InvalidRequestError(
            "messageType is TRANSACTIONAL or PROMOTIONAL; channel is SMS or WHATSAPP"
        ) from None
    if updated_at is not None:
        values["updated_at"] = updated_at
    return replace(automation, **values)


def _checked(automation: Automation) -> Automation:
    """The rule if it can work; InvalidRequestError naming the first problem otherwise."""
    defaults = DEFAULTS.get(automation.kind)
    if defaults is not None and automation.event_name != defaults.event_name:
        raise InvalidRequestError(
            f"a {automation.kind.value} automation runs on {defaults.event_name}; "
            "use kind custom for other events"
        )
    if not _EVENT_NAME.fullmatch(automation.event_name):
        raise InvalidRequestError(
            "eventName is required for custom automations: up to 100 letters, digits, . _ : -"
        )
    if not automation.name.strip() or len(automation.name) > 100:
        raise InvalidRequestError("name must be 1 to 100 characters")
    if automation.source is not None and not _SOURCE.fullmatch(automation.source):
        raise InvalidRequestError("source is up to 255 letters, digits and . _ : / @ -")
    if not automation.template.strip():
        raise InvalidRequestError("template is required")
    if len(automation.template) > rules.MAX_TEMPLATE_CHARS:
        raise InvalidRequestError(f"template is longer than {rules.MAX_TEMPLATE_CHARS} characters")
    if automation.message_type is MessageType.OTP:
        raise InvalidRequestError("messageType is TRANSACTIONAL or PROMOTIONAL")
    if automation.channel not in _CHANNELS:
        raise InvalidRequestError("channel is SMS or WHATSAPP")
    sender = automation.sender_id
    if automation.channel is Channel.SMS and not (
        sender and (_ALPHANUMERIC_SENDER.match(sender) or _NUMERIC_SENDER.match(sender))
    ):
        raise InvalidRequestError(
            "senderId must be up to 11 letters/digits or a number of up to 15 digits"
        )
    if not timedelta(0) <= automation.delay <= rules.MAX_DELAY:
        raise InvalidRequestError(f"delay is between 0 and {rules.MAX_DELAY.days} days")
    try:
        rules.check_quiet_hours(automation.quiet_hours)
    except ValueError as error:
        raise InvalidRequestError(str(error)) from None
    return automation


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _check_event(event: Event) -> None:
    if not _EVENT_NAME.fullmatch(event.name):
        raise InvalidRequestError("name is required: up to 100 letters, digits, . _ : -")
    if not event.key or len(event.key) > 255:
        raise InvalidRequestError("key must be 1 to 255 characters")
    if not _SOURCE.fullmatch(event.source):
        raise InvalidRequestError("source is up to 255 letters, digits and . _ : / @ -")
    if event.occurred_at.tzinfo is None:
        raise InvalidRequestError("occurredAt needs a time zone (e.g. Z)")
    if event.subject is not None and not 0 < len(event.subject) <= 200:
        raise InvalidRequestError("subject must be 1 to 200 characters")
    if event.phone is not None:
        try:
            parsed = phonenumbers.parse(event.phone)
        except phonenumbers.NumberParseException:
            parsed = None
        if (
            parsed is None
            or not phonenumbers.is_valid_number(parsed)
            or phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            != event.phone
        ):
            raise InvalidRequestError(f"phone '{event.phone}' is not a valid E.164 number")
    if event.email is not None and (len(event.email) > 320 or not _EMAIL.match(event.email)):
        raise InvalidRequestError(f"email '{event.email}' is not a valid address")
    if event.timezone is not None and not _is_zone(event.timezone):
        raise InvalidRequestError(f"timezone '{event.timezone}' is not an IANA time zone")


def _json_copy(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields as plain JSON (what the job keeps to render later), within a size limit."""
    try:
        text = json.dumps(dict(fields), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidRequestError("fields must be a JSON object") from None
    if len(text.encode()) > _MAX_FIELDS_BYTES:
        raise InvalidRequestError(f"fields are larger than {_MAX_FIELDS_BYTES // 1024} KiB")
    copied: dict[str, Any] = json.loads(text)
    return copied
