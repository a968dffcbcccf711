"""The persistence the automation engine needs: its rules, the events it saw, its durable jobs."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol

from switchboard.automations.rules import Automation, AutomationKind, EventRecord, Job, JobStatus
from switchboard.domain.messages import MessageRecord


class AutomationStore(Protocol):
    async def list_automations(self, account_id: str) -> list[Automation]: ...

    async def get_automation(self, account_id: str, automation_id: str) -> Automation | None: ...

    async def create_automation(self, automation: Automation) -> None: ...

    async def update_automation(self, automation: Automation) -> bool:
        """Replace the stored rule with the same (account, id); False when there is none."""
        ...

    async def delete_automation(self, account_id: str, automation_id: str, now: datetime) -> bool:
        """Delete the rule and cancel its pending jobs; False when there is none."""
        ...

    async def record_event(
        self,
        event: EventRecord,
        jobs: Sequence[Job],
        *,
        cancel_kinds: Collection[AutomationKind],
        now: datetime,
    ) -> bool:
        """In one transaction: store the event, its jobs, and cancel the pending jobs of
        `cancel_kinds` waiting on the event's subject. Returns False, writing nothing, when an
        event with the same (account, source, key) was already recorded (idempotent publish)."""
        ...

    async def subject_closed(self, account_id: str, subject: str, names: Collection[str]) -> bool:
        """Whether an event named one of `names` about `subject` was ever recorded (in any
        order: Shopify may deliver a checkout update after the order it became)."""
        ...

    async def clear_subject(self, account_id: str, subject: str, now: datetime) -> int:
        """Cancel the pending jobs on `subject`, and remember that it was cleared; the count."""
        ...

    async def forget_recipient(
        self, account_id: str, *, phone: str | None, email: str | None
    ) -> int:
        """Delete the events, and the jobs not yet sent, about this phone or e-mail; the count
        of rows deleted. Sent jobs keep only their message id (the address is erased)."""
        ...

    async def forget_source(self, account_id: str, source: str) -> int:
        """Delete the rules scoped to `source` with their unsent jobs, and the events from it;
        sent jobs keep only their ids (a shop uninstalled and redacted). The rows deleted."""
        ...

    async def prune_events(self, before: datetime) -> int:
        """Delete the events recorded before `before` (their keys may then be published
        again); how many."""
        ...

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_s: float,
        *,
        limit: int,
        job_ids: Sequence[str] | None = None,
    ) -> list[Job]:
        """Lease up to `limit` due PENDING jobs (only `job_ids` when given) no one else holds."""
        ...

    async def complete_job(
        self,
        job_id: str,
        owner: str,
        status: JobStatus,
        now: datetime,
        *,
        reason: str | None = None,
    ) -> bool:
        """End a leased job without a message (CANCELLED, SKIPPED, FAILED); False when the
        lease was lost or the job is no longer PENDING."""
        ...

    async def send_job(
        self,
        job_id: str,
        owner: str,
        message: MessageRecord,
        now: datetime,
        *,
        reason: str | None = None,
    ) -> bool:
        """Queue `message` and mark the leased job SENT (noting `reason`) in one transaction,
        or do neither (False: lease lost, or cancelled meanwhile). May raise what queueing
        raises (InsufficientFundsError)."""
        ...

    async def postpone_job(
        self, job_id: str, owner: str, due_at: datetime, now: datetime, *, reason: str | None
    ) -> None:
        """Give a leased job back, due again at `due_at`."""
        ...

    async def list_jobs(
        self, account_id: str, *, status: JobStatus | None, limit: int
    ) -> list[Job]:
        """The account's jobs, newest first."""
        ...
