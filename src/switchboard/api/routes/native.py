"""Native extensions under /api/v1: verification status and cancel, the sandbox outbox."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from switchboard.api import envelope
from switchboard.api.dependencies import AccountDep, ContainerDep
from switchboard.domain.messages import MessageRecord

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
    after_id: int = Query(default=0, alias="afterId", ge=0),
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
