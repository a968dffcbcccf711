"""Native /api/v1/automations (the rules and their jobs) and /api/v1/events (any CRM's events)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from switchboard.api import envelope
from switchboard.api.dependencies import AccountDep, ContainerDep
from switchboard.automations.events import Event
from switchboard.automations.rules import Automation, Job
from switchboard.errors import InvalidRequestError

router = APIRouter(prefix="/api/v1", tags=["automations"])


class AutomationFields(BaseModel):
    """The editable fields; on update only those given change."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str | None = Field(default=None, max_length=100)
    event_name: str | None = Field(default=None, alias="eventName", description="custom only")
    enabled: bool | None = None
    source: str | None = Field(
        default=None, description="e.g. shopify:acme.myshopify.com; null: any source"
    )
    template: str | None = Field(default=None, description="{{order.name}}, {{tracking_url}}…")
    sender_id: str | None = Field(default=None, alias="senderId")
    message_type: str | None = Field(
        default=None, alias="messageType", description="TRANSACTIONAL or PROMOTIONAL"
    )
    channel: str | None = Field(default=None, description="SMS or WHATSAPP")
    delay_minutes: int | None = Field(default=None, alias="delayMinutes", ge=0, le=60 * 24 * 60)
    delay_days: int | None = Field(default=None, alias="delayDays", ge=0, le=60)
    quiet_hours: str | None = Field(
        default=None, alias="quietHours", description="HH:MM-HH:MM local; null: none"
    )

    def changes(self) -> dict[str, Any]:
        given = self.model_fields_set
        if "delay_minutes" in given and "delay_days" in given:
            raise InvalidRequestError("give delayMinutes or delayDays, not both")
        changes: dict[str, Any] = {}
        for name in given - {"delay_minutes", "delay_days"}:
            value = getattr(self, name)
            if value is None and name not in ("source", "quiet_hours", "sender_id"):
                raise InvalidRequestError(f"{_ALIASES.get(name, name)} must not be null")
            changes[name] = value
        if "delay_minutes" in given or "delay_days" in given:
            minutes, days = self.delay_minutes, self.delay_days
            if minutes is None and days is None:
                raise InvalidRequestError("the delay must not be null")
            changes["delay"] = timedelta(minutes=minutes or 0, days=days or 0)
        return changes


_ALIASES = {"event_name": "eventName", "message_type": "messageType"}


class NewAutomation(AutomationFields):
    kind: str = Field(
        description="order_confirmation, shipping_update, abandoned_checkout, review_request, "
        "welcome or custom"
    )


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: dict[str, Any] = Field(default_factory=dict)


class EventRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(description="e.g. order.created, checkout.started, or your own")
    key: str | None = Field(
        default=None, description="idempotency key: the same key again does nothing"
    )
    source: str = Field(default="api")
    phone: str | None = Field(default=None, description="E.164, e.g. +919876543210")
    email: str | None = None
    subject: str | None = Field(default=None, description="e.g. checkout:<token>")
    consent: bool | None = Field(default=None, description="SMS marketing consent")
    timezone: str | None = Field(default=None, description="IANA name for quiet hours")
    occurred_at: datetime | None = Field(default=None, alias="occurredAt")
    fields: dict[str, Any] = Field(default_factory=dict)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def automation_view(automation: Automation) -> dict[str, Any]:
    return {
        "id": automation.id,
        "kind": automation.kind.value,
        "name": automation.name,
        "eventName": automation.event_name,
        "enabled": automation.enabled,
        "source": automation.source,
        "template": automation.template,
        "senderId": automation.sender_id,
        "messageType": automation.message_type.value,
        "channel": automation.channel.value,
        "delayMinutes": int(automation.delay.total_seconds() // 60),
        "quietHours": automation.quiet_hours,
        "createdAt": automation.created_at.isoformat(),
        "updatedAt": automation.updated_at.isoformat(),
    }


def job_view(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "automationId": job.automation_id,
        "kind": job.kind.value,
        "eventName": job.event_name,
        "subject": job.subject,
        "status": job.status.value,
        "dueAt": job.due_at.isoformat(),
        "reason": job.reason,
        "messageId": job.message_id,
        "attempts": job.attempts,
        "createdAt": job.created_at.isoformat(),
        "updatedAt": job.updated_at.isoformat(),
    }


@router.get("/automations", summary="The customer's automations")
async def list_automations(container: ContainerDep, account: AccountDep) -> dict[str, Any]:
    found = await container.automations.list(account.id)
    return envelope.success({"automations": [automation_view(x) for x in found]})


@router.post("/automations", summary="Create an automation (defaults per kind)")
async def create_automation(
    body: NewAutomation, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    changes = body.changes()
    changes.pop("kind", None)
    automation = await container.automations.create(account.id, body.kind, changes)
    return envelope.success(automation_view(automation))


@router.get("/automations/jobs", summary="The automations' jobs, newest first")
async def list_jobs(
    container: ContainerDep,
    account: AccountDep,
    status: str | None = Query(default=None, description="PENDING, SENT, CANCELLED, …"),
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    jobs = await container.automations.jobs(account.id, status=status, limit=limit)
    return envelope.success({"jobs": [job_view(x) for x in jobs]})


@router.get("/automations/{automation_id}", summary="One automation")
async def get_automation(
    automation_id: str, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    return envelope.success(
        automation_view(await container.automations.get(account.id, automation_id))
    )


@router.put("/automations/{automation_id}", summary="Change an automation (the fields given)")
async def update_automation(
    automation_id: str, body: AutomationFields, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    automation = await container.automations.update(account.id, automation_id, body.changes())
    return envelope.success(automation_view(automation))


@router.delete("/automations/{automation_id}", summary="Delete an automation")
async def delete_automation(
    automation_id: str, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    await container.automations.delete(account.id, automation_id)
    return envelope.success({"id": automation_id, "deleted": True})


@router.post(
    "/automations/{automation_id}/preview",
    summary="The text an event with these fields would send, and the variables it lacks",
)
async def preview_automation(
    automation_id: str, body: PreviewRequest, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    automation = await container.automations.get(account.id, automation_id)
    preview = container.automations.preview(automation, body.fields)
    return envelope.success({"text": preview.text, "missingVariables": list(preview.missing)})


@router.post("/events", summary="An event that triggers the customer's automations")
async def publish_event(
    body: EventRequest, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    occurred_at = body.occurred_at or container.clock.now()
    if occurred_at.tzinfo is None:
        raise InvalidRequestError("occurredAt needs a time zone (e.g. 2026-12-02T10:00:00Z)")
    event = Event(
        account_id=account.id,
        name=body.name,
        key=body.key or str(uuid.uuid4()),
        source=body.source,
        occurred_at=occurred_at,
        phone=body.phone,
        email=body.email,
        subject=body.subject,
        consent=body.consent,
        timezone=body.timezone,
        fields=body.fields,
    )
    publication = await container.automations.publish_event(event)
    return envelope.success(
        {
            "eventId": publication.event_id,
            "key": event.key,
            "duplicate": publication.duplicate,
            "jobs": [job_view(x) for x in publication.jobs],
        }
    )
