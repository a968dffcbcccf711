"""Native extensions under /api/v1: verification status and cancel, the sandbox outbox."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from switchboard.api import envelope
from switchboard.api.dependencies import AccountDep, ContainerDep
from switchboard.domain.messages import MessageRecord
from switchboard.errors import NotFoundError
from switchboard.fraud.guard import block_view
from switchboard.ingest.csv_export import write_csv_rows

router = APIRouter(prefix="/api/v1", tags=["native"])


def _send_view(message: MessageRecord) -> dict[str, Any]:
    return {
        "messageId": message.id,
        "step": message.step,
        "channel": message.channel.value,
        "connector": message.connector,
        "status": message.status.value,
        "deliveryStatus": message.status.report_name,
        "errorCode": message.error_code,
        "createdAt": message.created_at.isoformat(),
        "submittedAt": message.submitted_at.isoformat() if message.submitted_at else None,
        "doneAt": message.done_at.isoformat() if message.done_at else None,
    }


@router.get("/verifications/{verification_id}", summary="A verification's status and timeline")
async def get_verification(
    verification_id: str, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    record, sends, checks = await container.verification.timeline(account, verification_id)
    fraud = await container.fraud.hits_for(account.id, record.id)
    silent = await container.silent_auth.session_view(account.id, record.id)
    now = container.clock.now()
    return envelope.success(
        {
            "verificationId": str(record.id),
            "transactionId": record.transaction_id,
            "status": record.effective_status(now).value,
            "channel": record.channel.value,
            "countryCode": record.country_code,
            "mobileNumber": record.mobile_number,
            "attempts": record.attempts,
            "maxAttempts": record.max_attempts,
            "createdAt": record.created_at.isoformat(),
            "expiresAt": record.expires_at.isoformat(),
            "endedAt": record.ended_at.isoformat() if record.ended_at else None,
            "fallback": [c.value for c in record.fallback],
            "sends": [_send_view(m) for m in sends],
            "checks": [{"at": c["checked_at"].isoformat(), "result": c["result"]} for c in checks],
            "fraud": [block_view(b) for b in fraud],  # monitor-only hits of this send
            "silentAuth": silent,  # flowType=SAUTH: the operator's answer (null otherwise)
        }
    )


@router.post("/verifications/{verification_id}/cancel", summary="Cancel a pending verification")
async def cancel_verification(
    verification_id: str, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    record = await container.verification.cancel(account, verification_id)
    return envelope.success({"verificationId": str(record.id), "status": record.status.value})


@router.get("/sandbox/outbox", summary="What the sandbox carrier sent for this account")
async def sandbox_outbox(
    container: ContainerDep,
    account: AccountDep,
    after_id: int = Query(default=0, alias="afterId", ge=0, le=2**63 - 1),
    limit: int = Query(default=50, ge=1, le=500),
) -> dict[str, Any]:
    entries = await container.outbox.entries(account.id, after_id=after_id, limit=limit)
    return envelope.success(
        {
            "messages": [
                {
                    "id": e["id"],
                    "messageId": e["message_id"],
                    "channel": e["channel"],
                    "destination": e["destination"],
                    "sender": e["sender"],
                    "text": e["text"],
                    "sentAt": e["sent_at"].isoformat(),
                }
                for e in entries
            ]
        }
    )


def _history(message: MessageRecord, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entries = [{"status": "QUEUED", "at": message.created_at.isoformat(), "detail": "accepted"}]
    entries += [
        {
            "status": e["status"],
            "at": e["at"].isoformat(),
            "connector": e["connector"],
            "detail": e["detail"],
        }
        for e in events
    ]
    return entries


@router.get("/messages/{message_id}", summary="One message: its status and status history")
async def get_message(
    message_id: str, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    message = await container.queue.get_message(account.id, message_id)
    if message is None:
        raise NotFoundError(f"no message {message_id}")
    events = await container.queue.message_events(account.id, message_id)
    currency = container.billing.currency
    return envelope.success(
        {
            **_send_view(message),
            "messageType": message.message_type.value,
            "destination": message.destination,
            "sender": message.sender,
            "encoding": message.encoding,
            "segments": message.segments,
            "campaignId": message.campaign_id,
            "verificationId": str(message.verification_id) if message.verification_id else None,
            "charge": None
            if message.charge is None
            else {
                "amount": currency.format(message.charge),
                "currency": currency.code,
                "state": message.charge_state,
            },
            "history": _history(message, events),
        }
    )


_COUNTED = {
    "queued": ("HELD", "QUEUED", "SENDING"),
    "submitted": ("SUBMITTED", "UNKNOWN"),
    "delivered": ("DELIVERED",),
    "failed": ("UNDELIVERABLE", "EXPIRED", "REJECTED", "FAILED"),
    "cancelled": ("CANCELLED",),
}


@router.get("/campaigns/{campaign_id}", summary="A campaign's counts and progress")
async def get_campaign(
    campaign_id: str, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    campaign, counts = await container.messaging.campaign(account, campaign_id)
    summary = {name: sum(counts.get(s, 0) for s in states) for name, states in _COUNTED.items()}
    messages = sum(counts.values())
    done = summary["delivered"] + summary["failed"] + summary["cancelled"]
    return envelope.success(
        {
            "campaignId": campaign.id,
            "verificationId": str(campaign.numeric_id),
            "status": campaign.status,
            "channel": campaign.channel,
            "messageType": campaign.message_type,
            "source": campaign.source,
            "total": campaign.total,
            "invalid": campaign.invalid,
            "messages": messages,
            **summary,
            "byStatus": counts,
            "progress": round(done / messages, 4) if messages else 0.0,
            "scheduledAt": campaign.scheduled_at.isoformat() if campaign.scheduled_at else None,
            "createdAt": campaign.created_at.isoformat(),
            "errors": campaign.errors,
        }
    )


@router.post("/campaigns/{campaign_id}/cancel", summary="Cancel what a campaign has not sent yet")
async def cancel_campaign(
    campaign_id: str, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    cancelled = await container.messaging.cancel_campaign(account, campaign_id)
    return envelope.success({"campaignId": campaign_id, "cancelled": cancelled})


_REPORT_COLUMNS = (
    "messageId", "destination", "status", "deliveryStatus", "errorCode", "segments",
    "submittedAt", "doneAt",
)  # fmt: skip


def _report_row(message: MessageRecord) -> tuple[str | int | None, ...]:
    return (
        message.id,
        message.destination,
        message.status.value,
        message.status.report_name,
        message.error_code,
        message.segments,
        message.submitted_at.isoformat() if message.submitted_at else None,
        message.done_at.isoformat() if message.done_at else None,
    )


@router.get(
    "/campaigns/{campaign_id}/report",
    summary="Each recipient with its message id and delivery status (JSON or CSV)",
)
async def campaign_report(
    campaign_id: str,
    container: ContainerDep,
    account: AccountDep,
    report_format: str = Query(default="json", alias="format", pattern="^(json|csv)$"),
) -> StreamingResponse:
    campaign, _ = await container.messaging.campaign(account, campaign_id)
    rows = container.messaging.campaign_messages(account, campaign.id)

    async def csv_chunks() -> AsyncIterator[str]:
        buffer = io.StringIO()
        write_csv_rows(buffer, [_REPORT_COLUMNS])
        async for message in rows:
            write_csv_rows(buffer, [_report_row(message)])
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    async def json_chunks() -> AsyncIterator[str]:
        yield '{"responseCode":200,"message":"SUCCESS","data":{"campaignId":'
        yield json.dumps(campaign.id) + ',"recipients":['
        first = True
        async for message in rows:
            item = dict(zip(_REPORT_COLUMNS, _report_row(message), strict=True))
            yield ("" if first else ",") + json.dumps(item)
            first = False
        yield "]}}"

    if report_format == "csv":
        return StreamingResponse(
            csv_chunks(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="campaign-{campaign.id}.csv"'},
        )
    return StreamingResponse(json_chunks(), media_type="application/json")
