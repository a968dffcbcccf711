"""What the Pipedrive app keeps: installed companies with sealed tokens, campaigns, notes to log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class Company:
    """An installed Pipedrive company: its API host, sealed tokens and the app's settings."""

    company_id: str
    api_domain: str
    installed_by: str
    access_token: str  # sealed
    refresh_token: str  # sealed
    access_expires_at: datetime
    scope: str
    token_version: int
    refresh_claimed_until: datetime | None
    account_id: str | None
    sender_id: str | None
    message_type: str | None
    default_country_code: str | None
    installed_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """Sealed tokens from one token-endpoint answer."""

    access_token: str
    refresh_token: str
    access_expires_at: datetime
    scope: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    person_id: str
    name: str
    phone: str | None  # E.164, None when the person cannot be sent to
    problem: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SentCampaign:
    id: str
    company_id: str
    account_id: str
    campaign_id: str | None
    user_id: str
    template: str
    recipients: int
    skipped: int
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteJob:
    id: str
    company_id: str
    person_id: str
    content: str
    attempts: int


class PipedriveStore(Protocol):
    async def install(
        self, *, company_id: str, api_domain: str, user_id: str, grant: Grant, now: datetime
    ) -> None:
        """Insert or replace the company's tokens (a reinstall keeps its settings)."""

    async def uninstall(self, company_id: str) -> bool:
        """Remove the company's tokens and settings; True if it was installed."""

    async def get_company(self, company_id: str) -> Company | None: ...

    async def claim_refresh(
        self, company_id: str, token_version: int, until: datetime, now: datetime
    ) -> bool:
        """Take the refresh lease of `token_version` unless another holder's lease is live.

        False when the tokens already moved on or someone else holds the lease."""

    async def store_refresh(
        self, company_id: str, token_version: int, grant: Grant, now: datetime
    ) -> bool:
        """Replace the tokens if they are still at `token_version` (compare-and-swap), bump
        the version and release the lease; False when another writer won."""

    async def release_refresh(self, company_id: str, token_version: int) -> None:
        """Give the lease back after a failed refresh."""

    async def save_settings(
        self,
        company_id: str,
        *,
        account_id: str,
        sender_id: str,
        message_type: str,
        default_country_code: str | None,
        now: datetime,
    ) -> None: ...

    async def start_campaign(self, campaign: SentCampaign, form_nonce: str) -> bool:
        """Record a send about to happen; False if this form was already sent (its nonce)."""

    async def finish_campaign(
        self, campaign_id: str, messaging_campaign_id: str, recipients: Sequence[Recipient]
    ) -> None:
        """Link the MessageNow campaign and record whom it went to (and whom it skipped)."""

    async def drop_campaign(self, campaign_id: str) -> None:
        """Forget a send that was refused before anything was queued."""

    async def list_campaigns(self, company_id: str, limit: int = 100) -> list[SentCampaign]: ...

    async def get_campaign(self, company_id: str, campaign_id: str) -> SentCampaign | None: ...

    async def recipients(self, campaign_id: str) -> list[Recipient]: ...

    async def add_notes(self, jobs: Sequence[NoteJob], now: datetime) -> None: ...

    async def claim_notes(self, now: datetime, limit: int, lease_until: datetime) -> list[NoteJob]:
        """Due notes not yet logged (oldest first), each claimed until `lease_until` so that
        another worker does not post it too; a claim that runs out makes it due again."""

    async def settle_note(
        self,
        job_id: str,
        *,
        done: bool,
        error: str | None,
        retry_at: datetime | None,
        now: datetime,
    ) -> None:
        """Mark a note logged, or count the failed attempt and set the next (None: give up)."""
