"""The Pipedrive app's use cases: install, uninstall, settings, compose and send, report, notes."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from switchboard import tenancy
from switchboard.clock import Clock
from switchboard.config import PipedriveSettings
from switchboard.domain import encoding
from switchboard.domain.accounts import Account
from switchboard.domain.messages import MessageStatus, MessageType
from switchboard.domain.pricing import Currency
from switchboard.errors import AuthenticationError, InvalidRequestError, NotFoundError
from switchboard.integrations.pipedrive import persons
from switchboard.integrations.pipedrive.client import (
    PipedriveClient,
    PipedriveError,
    check_api_domain,
)
from switchboard.integrations.pipedrive.persons import Candidate
from switchboard.integrations.pipedrive.sessions import PageAuthenticator, Viewer
from switchboard.integrations.pipedrive.store import (
    Company,
    NoteJob,
    PipedriveStore,
    Recipient,
    SentCampaign,
)
from switchboard.integrations.pipedrive.tokens import CompanyTokens, NotInstalledError
from switchboard.observability import get_logger
from switchboard.services.accounts import AccountService
from switchboard.services.integration_keys import PartnerCredentials
from switchboard.services.messaging import MessageRequest, MessagingService, PersonalText

log = get_logger("switchboard.pipedrive")

CALLBACK_PATH: Final = "/integrations/pipedrive/callback"
_NOTE_BATCH: Final = 50
_NOTE_LEASE: Final = timedelta(minutes=5)  # a worker that dies mid-batch: posted again after
_NOTE_BACKOFF_S: Final = (10, 60, 300, 1800, 3600, 3600 * 6, 3600 * 12)
_MESSAGE_TYPES: Final = ("TRANSACTIONAL", "PROMOTIONAL")


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft:
    """A message to the selected persons as it would go out: who gets what, who cannot."""

    template: str
    sendable: list[tuple[Candidate, str]]  # the person and the rendered text
    skipped: list[Candidate]
    encodings: list[str]
    segments: int
    price: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportRow:
    person_id: str
    name: str
    phone: str | None
    status: str
    delivery_status: str | None
    problem: str | None = None


@dataclass(slots=True, kw_only=True)
class CampaignSummary:
    campaign: SentCampaign
    counts: dict[str, int] = field(default_factory=dict)


class PipedriveApp:
    def __init__(
        self,
        settings: PipedriveSettings,
        store: PipedriveStore,
        tokens: CompanyTokens,
        client: PipedriveClient,
        *,
        messaging: MessagingService,
        accounts: AccountService,
        partners: PartnerCredentials,
        clock: Clock,
        currency: Currency,
        pages: PageAuthenticator,
    ) -> None:
        self.settings = settings
        self.pages = pages
        self._store = store
        self._tokens = tokens
        self._client = client
        self._messaging = messaging
        self._accounts = accounts
        self._partners = partners
        self._clock = clock
        self._currency = currency
        self._notes_due = asyncio.Event()

    @property
    def redirect_uri(self) -> str:
        return self.settings.public_url.rstrip("/") + CALLBACK_PATH

    def authorize_url(self, state: str) -> str:
        from urllib.parse import urlencode

        query = urlencode(
            {"client_id": self.settings.client_id, "redirect_uri": self.redirect_uri,
             "state": state}
        )  # fmt: skip
        return f"{self.settings.oauth_base_url.rstrip('/')}/oauth/authorize?{query}"

    # -- install and uninstall ---------------------------------------------------------------

    async def install(self, code: str) -> Viewer:
        """Exchange the callback's code, find the company, keep its sealed tokens."""
        if not code:
            raise InvalidRequestError("the callback has no code")
        answer = await self._client.exchange_code(code, self.redirect_uri)
        api_domain = check_api_domain(
            answer.api_domain or self.settings.api_base_url,
            allow_loopback=self.settings.allow_loopback_api,
        )
        me = await self._client.me(api_domain, answer.access_token)
        await self._store.install(
            company_id=me.company_id, api_domain=api_domain, user_id=me.user_id,
            grant=self._tokens.grant(me.company_id, answer), now=self._clock.now(),
        )  # fmt: skip
        log.info("pipedrive app installed", company_id=me.company_id)
        return Viewer(company_id=me.company_id, user_id=me.user_id)

    def check_client_auth(self, authorization: str | None) -> None:
        """Pipedrive's uninstall call carries Basic client_id:client_secret."""
        scheme, _, value = (authorization or "").partition(" ")
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            given = b""
        expected = f"{self.settings.client_id}:{self.settings.client_secret}".encode()
        if scheme.lower() != "basic" or not hmac.compare_digest(given, expected):
            raise AuthenticationError("the uninstall call is not from this app's Pipedrive")

    async def uninstall(self, company_id: str) -> bool:
        removed = await self._store.uninstall(company_id)
        log.info("pipedrive app uninstalled", company_id=company_id, was_installed=removed)
        return removed

    # -- settings ----------------------------------------------------------------------------

    async def company(self, company_id: str) -> Company:
        company = await self._store.get_company(company_id)
        if company is None:
            raise NotInstalledError("this Pipedrive company has not installed the app")
        return company

    async def save_settings(
        self,
        viewer: Viewer,
        *,
        customer_id: str,
        email: str,
        password: str,
        sender_id: str,
        message_type: str,
        default_country_code: str,
    ) -> Account:
        """Link the company to the customer those credentials prove (the password or key itself
        is checked, never kept) and keep the sending defaults."""
        await self.company(viewer.company_id)
        account = await self._partners.authenticate(
            customer_id=customer_id or None, email=email or None, secret=password or None
        )
        message_type = message_type.strip().upper() or "TRANSACTIONAL"
        if message_type not in _MESSAGE_TYPES:
            raise InvalidRequestError("message type is TRANSACTIONAL or PROMOTIONAL")
        sender = sender_id.strip()
        if not sender or len(sender) > 15:
            raise InvalidRequestError("the sender id is required (up to 15 characters)")
        country = default_country_code.strip().removeprefix("+") or None
        if country is not None:
            from switchboard.domain.phone import normalise_country_code

            country = normalise_country_code(country)
        await self._store.save_settings(
            viewer.company_id, account_id=account.id, sender_id=sender,
            message_type=message_type, default_country_code=country, now=self._clock.now(),
        )  # fmt: skip
        return account

    async def _account(self, company: Company) -> Account:
        if company.account_id is None:
            raise InvalidRequestError(
                "connect a Switchboard account first: open the app's Settings in Pipedrive"
            )
        account = await self._accounts.get(company.account_id)
        if not account.enabled:
            raise AuthenticationError("the linked Switchboard account is disabled")
        tenancy.enter(account.id)  # the rest of the page's request sees this account's rows only
        return account

    # -- compose and send --------------------------------------------------------------------

    async def candidates(self, viewer: Viewer) -> tuple[Company, list[Candidate]]:
        """The selected persons, read from Pipedrive, each with its number or its problem."""
        company = await self.company(viewer.company_id)
        ids = list(viewer.selected_ids)
        if not ids:
            raise InvalidRequestError("select at least one person")
        if len(ids) > self.settings.max_recipients:
            raise InvalidRequestError(f"select at most {self.settings.max_recipients} persons")

        async def read(current: Company, token: str) -> list[dict[str, object]]:
            return await self._client.persons(current.api_domain, token, ids)

        found = {str(p.get("id")): p for p in await self._tokens.call(company.company_id, read)}
        result = []
        for person_id in ids:
            person = found.get(person_id)
            if person is None:
                result.append(
                    Candidate(
                        person_id=person_id,
                        name=f"Person {person_id}",
                        phone=None,
                        problem="not found in Pipedrive",
                        fields={},
                    )
                )
                continue  # fmt: skip
            result.append(persons.candidate(person, company.default_country_code))
        return company, result

    async def draft(self, viewer: Viewer, template: str) -> tuple[Company, Draft]:
        persons.check_template(template)
        company, candidates = await self.candidates(viewer)
        sendable: list[tuple[Candidate, str]] = []
        skipped: list[Candidate] = []
        kinds: set[str] = set()
        segments = 0
        numbers: dict[str, str] = {}
        for person in candidates:
            if person.phone is None:
                skipped.append(person)
                continue
            if person.phone in numbers:  # one SMS per number, even if two persons share it
                skipped.append(_skip(person, f"same number as {numbers[person.phone]}"))
                continue
            numbers[person.phone] = person.name
            try:
                text = persons.render(template, person)
            except InvalidRequestError as error:
                skipped.append(_skip(person, error.message))
                continue
            info = encoding.analyse(text)
            kinds.add(info.encoding.value)
            segments += info.segments
            sendable.append((person, text))
        draft = Draft(template=template, sendable=sendable, skipped=skipped,
                      encodings=sorted(kinds), segments=segments)  # fmt: skip
        if sendable:
            account = await self._account(company)
            quote = await self._messaging.send_texts(
                account, self._defaults(company, template, dry_run=True), _texts(sendable)
            )
            draft = _with_refusals(draft, quote.errors)
            if quote.price is not None:
                price = f"{self._currency.format(quote.price)} {self._currency.code}"
                draft = Draft(**{**_fields(draft), "price": price})  # type: ignore[arg-type]
        return company, draft

    async def send(self, viewer: Viewer, template: str) -> SentCampaign:
        """Send the draft as one MessageNow campaign; a form is sent at most once (its nonce)."""
        company, draft = await self.draft(viewer, template)
        if not draft.sendable:
            raise InvalidRequestError("none of the selected persons has a usable phone number")
        account = await self._account(company)
        record = SentCampaign(
            id=str(uuid.uuid4()), company_id=company.company_id, account_id=account.id,
            campaign_id=None, user_id=viewer.user_id, template=template,
            recipients=len(draft.sendable), skipped=len(draft.skipped),
            created_at=self._clock.now(),
        )  # fmt: skip
        if not viewer.nonce or not await self._store.start_campaign(record, viewer.nonce):
            raise InvalidRequestError("this form was already sent; open the page again")
        try:
            accepted = await self._messaging.send_texts(
                account, self._defaults(company, template), _texts(draft.sendable)
            )
        except BaseException:
            await self._store.drop_campaign(record.id)
            raise
        assert accepted.campaign_id is not None
        refused = {int(e["index"]): str(e["reason"]) for e in accepted.errors}
        recipients = [
            Recipient(person_id=p.person_id, name=p.name, phone=None if i in refused else p.phone,
                      problem=refused.get(i))
            for i, (p, _) in enumerate(draft.sendable)
        ] + [Recipient(person_id=p.person_id, name=p.name, phone=None, problem=p.problem)
             for p in draft.skipped]  # fmt: skip
        await self._store.finish_campaign(record.id, accepted.campaign_id, recipients)
        # Logged on each person after the send is accepted: Pipedrive being down delays the
        # notes (retried by the notes loop), never the SMS.
        await self._store.add_notes(
            [
                NoteJob(id=str(uuid.uuid4()), company_id=company.company_id,
                        person_id=p.person_id, attempts=0,
                        content=f"SMS sent via Switchboard from {company.sender_id}: {text}")
                for i, (p, text) in enumerate(draft.sendable) if i not in refused
            ],
            self._clock.now(),
        )  # fmt: skip
        self._notes_due.set()
        stored = await self._store.get_campaign(company.company_id, record.id)
        assert stored is not None
        return stored

    def _defaults(
        self, company: Company, template: str, *, dry_run: bool = False
    ) -> MessageRequest:
        return self._request(
            company.sender_id or "", company.message_type or "TRANSACTIONAL", template,
            dry_run=dry_run,
        )  # fmt: skip

    @staticmethod
    def _request(sender: str, message_type: str, template: str, *, dry_run: bool) -> MessageRequest:
        MessageType.parse(message_type)
        return MessageRequest(
            flow_type="SMS", message=template, sender_id=sender, message_type=message_type,
            dry_run=dry_run, client_ref="pipedrive",
        )  # fmt: skip

    # -- report ------------------------------------------------------------------------------

    async def campaigns(self, company_id: str) -> list[CampaignSummary]:
        company = await self.company(company_id)
        summaries = []
        for sent in await self._store.list_campaigns(company.company_id):
            counts: dict[str, int] = {}
            if sent.campaign_id is not None:
                account = await self._accounts.get(sent.account_id)
                _, counts = await self._messaging.campaign(account, sent.campaign_id)
            summaries.append(CampaignSummary(campaign=sent, counts=counts))
        return summaries

    async def report(
        self, company_id: str, campaign_id: str
    ) -> tuple[SentCampaign, list[ReportRow]]:
        """Every person of one campaign: number, name and the message's current status."""
        sent = await self._store.get_campaign(company_id, campaign_id)
        if sent is None or sent.campaign_id is None:
            raise NotFoundError("no such campaign for this company")
        account = await self._accounts.get(sent.account_id)
        statuses: dict[str, MessageStatus] = {}
        async for message in self._messaging.campaign_messages(account, sent.campaign_id):
            statuses[message.destination] = message.status
        rows = []
        for person in await self._store.recipients(sent.id):
            status = statuses.get(person.phone) if person.phone else None
            rows.append(ReportRow(
                person_id=person.person_id, name=person.name, phone=person.phone,
                status=status.value if status else "NOT SENT",
                delivery_status=status.report_name if status else None, problem=person.problem,
            ))  # fmt: skip
        return sent, rows

    # -- notes on persons --------------------------------------------------------------------

    async def log_due_notes(self) -> int:
        """Post the due notes to Pipedrive; failures are retried with backoff, then recorded."""
        now = self._clock.now()
        jobs = await self._store.claim_notes(now, _NOTE_BATCH, now + _NOTE_LEASE)
        for job in jobs:
            try:
                await self._tokens.call(job.company_id, _note_action(self._client, job))
            except (PipedriveError, NotInstalledError) as error:
                attempt = job.attempts + 1
                retry = None
                if attempt < self.settings.note_attempts and not isinstance(
                    error, NotInstalledError
                ):
                    delay = _NOTE_BACKOFF_S[min(attempt - 1, len(_NOTE_BACKOFF_S) - 1)]
                    retry = self._clock.now() + timedelta(seconds=delay)
                await self._store.settle_note(
                    job.id, done=False, error=str(error), retry_at=retry, now=self._clock.now()
                )
                log.warning("pipedrive note failed", company_id=job.company_id,
                            person_id=job.person_id, attempt=attempt, error=str(error))  # fmt: skip
                continue
            await self._store.settle_note(
                job.id, done=True, error=None, retry_at=None, now=self._clock.now()
            )
        return len(jobs)

    async def run_notes(self) -> None:
        """The notes loop of a worker: wakes on a send or every `note_poll_s`."""
        while True:
            try:
                while await self.log_due_notes() == _NOTE_BATCH:
                    pass
            except Exception:  # a database hiccup: try again next round
                log.exception("pipedrive notes loop failed")
            self._notes_due.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._notes_due.wait(), self.settings.note_poll_s)

    async def close(self) -> None:
        await self._client.close()


def _note_action(
    client: PipedriveClient, job: NoteJob
) -> Callable[[Company, str], Awaitable[None]]:
    async def post(company: Company, token: str) -> None:
        await client.add_note(company.api_domain, token, job.person_id, job.content)

    return post


def _skip(person: Candidate, problem: str) -> Candidate:
    return Candidate(person_id=person.person_id, name=person.name, phone=None, problem=problem,
                     fields=person.fields)  # fmt: skip


def _texts(sendable: Sequence[tuple[Candidate, str]]) -> list[PersonalText]:
    return [PersonalText(e164=p.phone or "", text=text) for p, text in sendable]


def _fields(draft: Draft) -> dict[str, object]:
    return {name: getattr(draft, name) for name in Draft.__dataclass_fields__}


def _with_refusals(draft: Draft, errors: Sequence[dict[str, object]]) -> Draft:
    """Move the persons MessageNow refused (a number it rejects) to the skipped list."""
    if not errors:
        return draft
    refused = {int(str(e["index"])): str(e["reason"]) for e in errors}
    sendable = [item for i, item in enumerate(draft.sendable) if i not in refused]
    skipped = draft.skipped + [
        _skip(item[0], refused[i]) for i, item in enumerate(draft.sendable) if i in refused
    ]
    return Draft(**{**_fields(draft), "sendable": sendable, "skipped": skipped})  # type: ignore[arg-type]
