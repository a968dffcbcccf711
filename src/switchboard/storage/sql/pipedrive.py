"""SQL persistence of the Pipedrive app: companies and their tokens, campaigns, notes to log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from switchboard.integrations.pipedrive.store import (
    Company,
    Grant,
    NoteJob,
    Recipient,
    SentCampaign,
)
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import (
    pipedrive_campaigns,
    pipedrive_companies,
    pipedrive_notes,
    pipedrive_recipients,
)

_COMPANY = tuple(f.name for f in fields(Company))
_CAMPAIGN = tuple(f.name for f in fields(SentCampaign))
_companies = pipedrive_companies.c
_campaigns = pipedrive_campaigns.c
_notes = pipedrive_notes.c


def _company(row: sa.Row[Any]) -> Company:
    values = row._mapping
    return Company(**{name: values[name] for name in _COMPANY})


def _campaign(row: sa.Row[Any]) -> SentCampaign:
    values = row._mapping
    return SentCampaign(**{name: values[name] for name in _CAMPAIGN})


def _tokens(grant: Grant) -> dict[str, Any]:
    return {
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "access_expires_at": grant.access_expires_at,
        "scope": grant.scope,
    }


class SqlPipedriveStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def install(
        self, *, company_id: str, api_domain: str, user_id: str, grant: Grant, now: datetime
    ) -> None:
        values = {**_tokens(grant), "api_domain": api_domain, "installed_by": user_id,
                  "refresh_claimed_until": None, "updated_at": now}  # fmt: skip
        async with self._db.write() as connection:
            updated = await connection.execute(
                pipedrive_companies.update()
                .where(_companies.company_id == company_id)
                .values(token_version=_companies.token_version + 1, **values)
            )
            if updated.rowcount == 0:
                await connection.execute(
                    pipedrive_companies.insert().values(
                        company_id=company_id, installed_at=now, token_version=0, **values
                    )
                )

    async def uninstall(self, company_id: str) -> bool:
        async with self._db.write() as connection:
            removed = await connection.execute(
                pipedrive_companies.delete().where(_companies.company_id == company_id)
            )
            await connection.execute(
                pipedrive_notes.delete().where(
                    _notes.company_id == company_id, _notes.done_at.is_(None)
                )
            )
        return bool(removed.rowcount)

    async def get_company(self, company_id: str) -> Company | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(pipedrive_companies).where(_companies.company_id == company_id)
                )
            ).first()
        return _company(row) if row else None

    async def claim_refresh(
        self, company_id: str, token_version: int, until: datetime, now: datetime
    ) -> bool:
        async with self._db.write() as connection:
            claimed = await connection.execute(
                pipedrive_companies.update()
                .where(
                    _companies.company_id == company_id,
                    _companies.token_version == token_version,
                    sa.or_(
                        _companies.refresh_claimed_until.is_(None),
                        _companies.refresh_claimed_until < now,
                    ),
                )
                .values(refresh_claimed_until=until)
            )
        return bool(claimed.rowcount)

    async def store_refresh(
        self, company_id: str, token_version: int, grant: Grant, now: datetime
    ) -> bool:
        async with self._db.write() as connection:
            stored = await connection.execute(
                pipedrive_companies.update()
                .where(
                    _companies.company_id == company_id,
                    _companies.token_version == token_version,
                )
                .values(
                    token_version=token_version + 1,
                    refresh_claimed_until=None,
                    updated_at=now,
                    **_tokens(grant),
                )
            )
        return bool(stored.rowcount)

    async def release_refresh(self, company_id: str, token_version: int) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                pipedrive_companies.update()
                .where(
                    _companies.company_id == company_id,
                    _companies.token_version == token_version,
                )
                .values(refresh_claimed_until=None)
            )

    async def save_settings(
        self,
        company_id: str,
        *,
        account_id: str,
        sender_id: str,
        message_type: str,
        default_country_code: str | None,
        now: datetime,
    ) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                pipedrive_companies.update()
                .where(_companies.company_id == company_id)
                .values(
                    account_id=account_id,
                    sender_id=sender_id,
                    message_type=message_type,
                    default_country_code=default_country_code,
                    updated_at=now,
                )
            )

    async def start_campaign(self, campaign: SentCampaign, form_nonce: str) -> bool:
        values = {name: getattr(campaign, name) for name in _CAMPAIGN}
        try:
            async with self._db.write() as connection:
                await connection.execute(
                    pipedrive_campaigns.insert().values(**values, form_nonce=form_nonce)
                )
        except sa.exc.IntegrityError:  # the nonce is unique: this form was sent already
            return False
        return True

    async def finish_campaign(
        self, campaign_id: str, messaging_campaign_id: str, recipients: Sequence[Recipient]
    ) -> None:
        sent = sum(1 for r in recipients if r.phone is not None)
        async with self._db.write() as connection:
            await connection.execute(
                pipedrive_campaigns.update()
                .where(_campaigns.id == campaign_id)
                .values(
                    campaign_id=messaging_campaign_id,
                    recipients=sent,
                    skipped=len(recipients) - sent,
                )
            )
            if recipients:
                await connection.execute(
                    pipedrive_recipients.insert(),
                    [
                        {"campaign_id": campaign_id, "person_id": r.person_id,
                         "name": r.name[:255], "phone": r.phone,
                         "problem": r.problem[:255] if r.problem else None}
                        for r in recipients
                    ],
                )  # fmt: skip

    async def drop_campaign(self, campaign_id: str) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                pipedrive_recipients.delete().where(
                    pipedrive_recipients.c.campaign_id == campaign_id
                )
            )
            await connection.execute(
                pipedrive_campaigns.delete().where(_campaigns.id == campaign_id)
            )

    async def list_campaigns(self, company_id: str, limit: int = 100) -> list[SentCampaign]:
        async with self._db.read() as connection:
            rows = (
                await connection.execute(
                    sa.select(pipedrive_campaigns)
                    .where(_campaigns.company_id == company_id, _campaigns.campaign_id.is_not(None))
                    .order_by(_campaigns.created_at.desc(), _campaigns.id)
                    .limit(limit)
                )
            ).all()
        return [_campaign(row) for row in rows]

    async def get_campaign(self, company_id: str, campaign_id: str) -> SentCampaign | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(pipedrive_campaigns).where(
                        _campaigns.company_id == company_id, _campaigns.id == campaign_id
                    )
                )
            ).first()
        return _campaign(row) if row else None

    async def recipients(self, campaign_id: str) -> list[Recipient]:
        table = pipedrive_recipients
        async with self._db.read() as connection:
            rows = (
                await connection.execute(
                    sa.select(table.c.person_id, table.c.name, table.c.phone, table.c.problem)
                    .where(table.c.campaign_id == campaign_id)
                    .order_by(table.c.name, table.c.person_id)
                )
            ).all()
        return [
            Recipient(person_id=r.person_id, name=r.name, phone=r.phone, problem=r.problem)
            for r in rows
        ]

    async def add_notes(self, jobs: Sequence[NoteJob], now: datetime) -> None:
        if not jobs:
            return
        async with self._db.write() as connection:
            await connection.execute(
                pipedrive_notes.insert(),
                [
                    {"id": j.id, "company_id": j.company_id, "person_id": j.person_id,
                     "content": j.content, "attempts": j.attempts, "due_at": now,
                     "created_at": now}
                    for j in jobs
                ],
            )  # fmt: skip

    async def claim_notes(self, now: datetime, limit: int, lease_until: datetime) -> list[NoteJob]:
        claimed: list[NoteJob] = []
        async with self._db.write() as connection:
            rows = (
                await connection.execute(
                    sa.select(
                        _notes.id, _notes.company_id, _notes.person_id, _notes.content,
                        _notes.attempts, _notes.due_at,
                    )
                    .where(_notes.done_at.is_(None), _notes.due_at <= now)
                    .order_by(_notes.due_at, _notes.id)
                    .limit(limit)
                )
            ).all()  # fmt: skip
            for r in rows:
                # conditional on the due time read: of two workers, one moves it first
                taken = await connection.execute(
                    pipedrive_notes.update()
                    .where(_notes.id == r.id, _notes.due_at == r.due_at, _notes.done_at.is_(None))
                    .values(due_at=lease_until)
                )
                if taken.rowcount:
                    claimed.append(
                        NoteJob(id=r.id, company_id=r.company_id, person_id=r.person_id,
                                content=r.content, attempts=r.attempts)
                    )  # fmt: skip
        return claimed

    async def settle_note(
        self, job_id: str, *, done: bool, error: str | None, retry_at: datetime | None,
        now: datetime,
    ) -> None:  # fmt: skip
        values: dict[str, Any] = {"attempts": _notes.attempts + 1}
        if done:
            values["done_at"] = now
        else:
            values["last_error"] = (error or "")[:500]
            # giving up still ends the job; last_error says why
            values["done_at" if retry_at is None else "due_at"] = retry_at or now
        async with self._db.write() as connection:
            await connection.execute(
                pipedrive_notes.update().where(_notes.id == job_id).values(values)
            )
