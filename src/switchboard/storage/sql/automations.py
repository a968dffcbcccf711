"""SQL persistence of the automation engine: rules, events seen (dedupe) and durable jobs."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.automations.rules import (
    SUBJECT_CLEARED,
    Automation,
    AutomationKind,
    EventRecord,
    Job,
    JobStatus,
)
from switchboard.domain.messages import Channel, MessageRecord, MessageType
from switchboard.storage.sql.charges import MessageCharges
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.locks import leased_first
from switchboard.storage.sql.queue import SqlMessageQueue
from switchboard.storage.sql.tables import automation_events, automation_jobs, automations

a = automations.c
e = automation_events.c
j = automation_jobs.c

_PENDING = JobStatus.PENDING.value
_CLEARING_SOURCE = "automations"  # the source of the markers clear_subject records
_JOB_FIELDS = tuple(name for name in Job.__slots__ if name not in ("kind", "status"))


def _automation_values(automation: Automation) -> dict[str, Any]:
    return {
        "id": automation.id,
        "account_id": automation.account_id,
        "kind": automation.kind.value,
        "event_name": automation.event_name,
        "name": automation.name,
        "enabled": automation.enabled,
        "source": automation.source,
        "template": automation.template,
        "sender_id": automation.sender_id,
        "message_type": automation.message_type.value,
        "channel": automation.channel.value,
        "delay_s": int(automation.delay.total_seconds()),
        "quiet_hours": automation.quiet_hours,
        "created_at": automation.created_at,
        "updated_at": automation.updated_at,
    }


def _automation(row: sa.Row[Any]) -> Automation:
    v = row._mapping
    return Automation(
        id=v["id"],
        account_id=v["account_id"],
        kind=AutomationKind(v["kind"]),
        event_name=v["event_name"],
        name=v["name"],
        enabled=v["enabled"],
        source=v["source"],
        template=v["template"],
        sender_id=v["sender_id"],
        message_type=MessageType(v["message_type"]),
        channel=Channel(v["channel"]),
        delay=timedelta(seconds=v["delay_s"]),
        quiet_hours=v["quiet_hours"],
        created_at=v["created_at"],
        updated_at=v["updated_at"],
    )


def _job_values(job: Job) -> dict[str, Any]:
    values = {name: getattr(job, name) for name in _JOB_FIELDS}
    values["kind"] = job.kind.value
    values["status"] = job.status.value
    values["context"] = dict(job.context)
    return values


def _job(row: sa.Row[Any]) -> Job:
    v = row._mapping
    return Job(
        **{name: v[name] for name in _JOB_FIELDS},
        kind=AutomationKind(v["kind"]),
        status=JobStatus(v["status"]),
    )


def _insert(connection: AsyncConnection, table: sa.Table) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


class SqlAutomationStore:
    def __init__(
        self,
        database: Database,
        queue: SqlMessageQueue,
        *,
        charges: MessageCharges | None = None,
    ) -> None:
        self._db = database
        self._queue = queue
        self._charges = charges or MessageCharges()

    # -- rules ------------------------------------------------------------------------------

    async def list_automations(self, account_id: str) -> list[Automation]:
        query = (
            sa.select(automations).where(a.account_id == account_id).order_by(a.created_at, a.id)
        )
        async with self._db.read() as connection:
            return [_automation(row) for row in await connection.execute(query)]

    async def get_automation(self, account_id: str, automation_id: str) -> Automation | None:
        query = sa.select(automations).where(a.account_id == account_id, a.id == automation_id)
        async with self._db.read() as connection:
            row = (await connection.execute(query)).first()
        return _automation(row) if row else None

    async def create_automation(self, automation: Automation) -> None:
        async with self._db.write() as connection:
            await connection.execute(automations.insert().values(_automation_values(automation)))

    async def update_automation(self, automation: Automation) -> bool:
        values = _automation_values(automation)
        for fixed in ("id", "account_id", "created_at"):
            values.pop(fixed)
        async with self._db.write() as connection:
            result = await connection.execute(
                automations.update()
                .where(a.id == automation.id, a.account_id == automation.account_id)
                .values(values)
            )
        return bool(result.rowcount)

    async def delete_automation(self, account_id: str, automation_id: str, now: datetime) -> bool:
        async with self._db.write() as connection:
            result = await connection.execute(
                automations.delete().where(a.id == automation_id, a.account_id == account_id)
            )
            if not result.rowcount:
                return False
            await connection.execute(
                _cancel(j.automation_id == automation_id, now, "automation deleted")
            )
        return True

    # -- events -----------------------------------------------------------------------------

    async def record_event(
        self,
        event: EventRecord,
        jobs: Sequence[Job],
        *,
        cancel_kinds: Collection[AutomationKind],
        now: datetime,
    ) -> bool:
        values = {name: getattr(event, name) for name in EventRecord.__slots__}
        async with self._db.write() as connection:
            # Concurrent duplicates: on PostgreSQL the later inserts wait on the unique index
            # for the first transaction, then insert nothing.
            inserted = await connection.execute(
                _insert(connection, automation_events)
                .values(values)
                .on_conflict_do_nothing(index_elements=["account_id", "source", "key"])
                .returning(e.id)
            )
            # RETURNING, not rowcount: psycopg reports no reliable rowcount for this insert
            if inserted.first() is None:
                return False
            if cancel_kinds and event.subject is not None:
                await connection.execute(
                    _cancel(
                        sa.and_(
                            j.account_id == event.account_id,
                            j.subject == event.subject,
                            j.kind.in_([k.value for k in cancel_kinds]),
                        ),
                        now,
                        f"{event.name} for the same subject",
                    )
                )
            if jobs:
                await connection.execute(automation_jobs.insert(), [_job_values(x) for x in jobs])
        return True

    async def subject_closed(self, account_id: str, subject: str, names: Collection[str]) -> bool:
        query = (
            sa.select(e.id)
            .where(e.account_id == account_id, e.subject == subject, e.name.in_(list(names)))
            .limit(1)
        )
        async with self._db.read() as connection:
            return (await connection.execute(query)).first() is not None

    async def clear_subject(self, account_id: str, subject: str, now: datetime) -> int:
        marker = {
            "id": str(uuid.uuid4()), "account_id": account_id, "source": _CLEARING_SOURCE,
            "key": f"cleared:{subject}", "name": SUBJECT_CLEARED, "subject": subject,
            "phone": None, "email": None, "occurred_at": now, "recorded_at": now,
        }  # fmt: skip
        async with self._db.write() as connection:
            await connection.execute(
                _insert(connection, automation_events)
                .values(marker)
                .on_conflict_do_nothing(index_elements=["account_id", "source", "key"])
            )
            result = await connection.execute(
                _cancel(
                    sa.and_(j.account_id == account_id, j.subject == subject),
                    now,
                    "subject cleared",
                )
            )
        return int(result.rowcount or 0)

    async def forget_recipient(
        self, account_id: str, *, phone: str | None, email: str | None
    ) -> int:
        def about(columns: Any) -> sa.ColumnElement[bool]:
            matches = []
            if phone:
                matches.append(columns.phone == phone)
            if email:
                matches.append(columns.email == email)
            return sa.and_(columns.account_id == account_id, sa.or_(*matches))

        if not phone and not email:
            return 0
        async with self._db.write() as connection:
            events = await connection.execute(automation_events.delete().where(about(e)))
            unsent = await connection.execute(
                automation_jobs.delete().where(about(j), j.status != JobStatus.SENT.value)
            )
            # a sent job is the message's history: keep its ids, drop the person
            await connection.execute(
                automation_jobs.update()
                .where(about(j), j.status == JobStatus.SENT.value)
                .values(phone=None, email=None, subject=None, context={})
            )
        return int(events.rowcount or 0) + int(unsent.rowcount or 0)

    async def forget_source(self, account_id: str, source: str) -> int:
        rules = sa.select(a.id).where(a.account_id == account_id, a.source == source)
        async with self._db.write() as connection:
            ids = list((await connection.execute(rules)).scalars())
            deleted = 0
            if ids:
                of_rules = sa.and_(j.account_id == account_id, j.automation_id.in_(ids))
                unsent = await connection.execute(
                    automation_jobs.delete().where(of_rules, j.status != JobStatus.SENT.value)
                )
                await connection.execute(
                    automation_jobs.update()
                    .where(of_rules)
                    .values(phone=None, email=None, subject=None, context={})
                )
                rules_deleted = await connection.execute(automations.delete().where(a.id.in_(ids)))
                deleted += int(unsent.rowcount or 0) + int(rules_deleted.rowcount or 0)
            events = await connection.execute(
                automation_events.delete().where(e.account_id == account_id, e.source == source)
            )
        return deleted + int(events.rowcount or 0)

    async def prune_events(self, before: datetime) -> int:
        async with self._db.write() as connection:
            result = await connection.execute(
                automation_events.delete().where(e.recorded_at < before)
            )
        return int(result.rowcount or 0)

    # -- jobs -------------------------------------------------------------------------------

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_s: float,
        *,
        limit: int,
        job_ids: Sequence[str] | None = None,
    ) -> list[Job]:
        due = (
            sa.select(j.id)
            .where(
                j.status == _PENDING,
                j.due_at <= now,
                sa.or_(j.lease_until.is_(None), j.lease_until < now),
            )
            .order_by(j.due_at)
            .limit(limit)
        )
        if job_ids is not None:
            due = due.where(j.id.in_(list(job_ids)))
        chosen = j.id.in_(due.scalar_subquery()) if self._db.is_sqlite else leased_first(j.id, due)
        statement = (
            automation_jobs.update()
            .where(chosen, j.status == _PENDING)
            .values(
                lease_owner=owner,
                lease_until=now + timedelta(seconds=lease_s),
                attempts=j.attempts + 1,
                updated_at=now,
            )
            .returning(*automation_jobs.c)
        )
        async with self._db.write() as connection:
            rows = (await connection.execute(statement)).all()
        return sorted((_job(row) for row in rows), key=lambda job: job.due_at)

    async def complete_job(
        self,
        job_id: str,
        owner: str,
        status: JobStatus,
        now: datetime,
        *,
        reason: str | None = None,
    ) -> bool:
        async with self._db.write() as connection:
            result = await connection.execute(
                automation_jobs.update()
                .where(j.id == job_id, j.status == _PENDING, j.lease_owner == owner)
                .values(
                    status=status.value,
                    reason=_reason(reason),
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                    done_at=now,
                )
            )
        return bool(result.rowcount)

    async def send_job(
        self,
        job_id: str,
        owner: str,
        message: MessageRecord,
        now: datetime,
        *,
        reason: str | None = None,
    ) -> bool:
        async with self._db.write() as connection:
            # The job's row first: on PostgreSQL this locks it, so a concurrent cancel waits
            # and then finds it SENT; a cancel that won makes this update match nothing.
            result = await connection.execute(
                automation_jobs.update()
                .where(j.id == job_id, j.status == _PENDING, j.lease_owner == owner)
                .values(
                    status=JobStatus.SENT.value,
                    message_id=message.id,
                    reason=_reason(reason),
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                    done_at=now,
                )
            )
            if not result.rowcount:
                return False
            batch = await self._charges.on_accept(connection, [message])
            await self._queue.enqueue(connection, batch)
        return True

    async def postpone_job(
        self, job_id: str, owner: str, due_at: datetime, now: datetime, *, reason: str | None
    ) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                automation_jobs.update()
                .where(j.id == job_id, j.status == _PENDING, j.lease_owner == owner)
                .values(
                    due_at=due_at,
                    reason=_reason(reason),
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                )
            )

    async def list_jobs(
        self, account_id: str, *, status: JobStatus | None, limit: int
    ) -> list[Job]:
        query = sa.select(automation_jobs).where(j.account_id == account_id)
        if status is not None:
            query = query.where(j.status == status.value)
        query = query.order_by(j.created_at.desc(), j.id).limit(limit)
        async with self._db.read() as connection:
            return [_job(row) for row in await connection.execute(query)]


def _cancel(condition: sa.ColumnElement[bool], now: datetime, reason: str) -> sa.Update:
    """Cancel the PENDING jobs matching `condition`, leased or not: a runner holding one then
    finds its send matching nothing."""
    return (
        automation_jobs.update()
        .where(condition, j.status == _PENDING)
        .values(
            status=JobStatus.CANCELLED.value,
            reason=_reason(reason),
            lease_owner=None,
            lease_until=None,
            updated_at=now,
            done_at=now,
        )
    )


def _reason(reason: str | None) -> str | None:
    return None if reason is None else reason[:255]
