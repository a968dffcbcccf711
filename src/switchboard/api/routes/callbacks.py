"""Native /api/v1/callbacks: the customer's callback URL, signing secret, deliveries and replay."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from switchboard.api import envelope
from switchboard.api.dependencies import AccountDep, ContainerDep
from switchboard.callbacks.secrets import secret_id
from switchboard.domain.callbacks import CallbackEndpoint, WebhookDelivery

router = APIRouter(prefix="/api/v1/callbacks", tags=["callbacks"])


class CallbackUpdate(BaseModel):
    """PUT body: the URL (null or "" removes it) and, optionally, extra event subscriptions."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    url: str | None = Field(alias="callbackUrl")
    events: list[str] | None = None


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def endpoint_view(
    endpoint: CallbackEndpoint, overlap: timedelta, now: datetime, *, new_secret: str | None = None
) -> dict[str, Any]:
    """What a customer may see of its endpoint: the secret only when it is new."""
    signing = endpoint.signing_secrets(now, overlap)
    previous = endpoint.previous_secret if endpoint.previous_secret in signing else None
    view: dict[str, Any] = {
        "callbackUrl": endpoint.url,
        "events": sorted(endpoint.events),
        "enabled": endpoint.url is not None and endpoint.disabled_at is None,
        "disabledAt": _time(endpoint.disabled_at),
        "disabledReason": endpoint.disabled_reason,
        "secretId": secret_id(endpoint.secret) if endpoint.secret else None,
        "previousSecretId": secret_id(previous) if previous else None,
        "previousSecretValidUntil": (
            _time(endpoint.rotated_at + overlap) if previous and endpoint.rotated_at else None
        ),
    }
    if new_secret is not None:
        view["secret"] = new_secret
    return view


def delivery_view(delivery: WebhookDelivery, *, with_payload: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": delivery.id,
        "eventType": delivery.event_type,
        "messageId": delivery.message_id,
        "verificationId": str(delivery.verification_id) if delivery.verification_id else None,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "nextAttemptAt": _time(delivery.next_attempt_at),
        "createdAt": _time(delivery.created_at),
        "deliveredAt": _time(delivery.delivered_at),
        "deadAt": _time(delivery.dead_at),
        "lastStatusCode": delivery.last_status_code,
        "lastLatencyMs": delivery.last_latency_ms,
        "lastError": delivery.last_error,
        "replays": delivery.replays,
        "url": delivery.url,
        "recentAttempts": [
            {
                "attempt": attempt.attempt,
                "at": attempt.at.isoformat(),
                "statusCode": attempt.status_code,
                "latencyMs": attempt.latency_ms,
                "error": attempt.error,
            }
            for attempt in delivery.recent_attempts
        ],
    }
    if with_payload:
        view["payload"] = json.loads(delivery.payload)
    return view


@router.get("", summary="The callback URL, the signing secret's id and the event subscription")
async def get_callback(container: ContainerDep, account: AccountDep) -> dict[str, Any]:
    endpoint = await container.callbacks.endpoint(account.id)
    return envelope.success(
        endpoint_view(endpoint, container.callbacks.rotation_overlap, container.clock.now())
    )


@router.put("", summary="Set or remove the callback URL; the first URL gets a signing secret")
async def put_callback(
    update: CallbackUpdate, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    configured = await container.callbacks.configure(account.id, update.url, events=update.events)
    return envelope.success(
        endpoint_view(
            configured.endpoint,
            container.callbacks.rotation_overlap,
            container.clock.now(),
            new_secret=configured.new_secret,
        )
    )


@router.post("/rotate-secret", summary="A new signing secret; the old one signs beside it 24 h")
async def rotate_secret(container: ContainerDep, account: AccountDep) -> dict[str, Any]:
    configured = await container.callbacks.rotate_secret(account.id)
    return envelope.success(
        endpoint_view(
            configured.endpoint,
            container.callbacks.rotation_overlap,
            container.clock.now(),
            new_secret=configured.new_secret,
        )
    )


@router.get("/deliveries", summary="Recent deliveries, newest first, with their last attempts")
async def list_deliveries(
    container: ContainerDep,
    account: AccountDep,
    status: str | None = Query(default=None, description="PENDING, DELIVERED or DEAD"),
    message_id: str | None = Query(default=None, alias="messageId"),
    limit: int = Query(default=50, ge=1, le=200),
) -> dict[str, Any]:
    deliveries = await container.callbacks.deliveries(
        account.id, status=status, message_id=message_id, limit=limit
    )
    return envelope.success({"deliveries": [delivery_view(x) for x in deliveries]})


@router.get("/deliveries/{delivery_id}", summary="One delivery with its payload")
async def get_delivery(
    delivery_id: str, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    delivery = await container.callbacks.delivery(account.id, delivery_id)
    return envelope.success(delivery_view(delivery, with_payload=True))


@router.post(
    "/deliveries/{delivery_id}/replay",
    summary="Send a delivery again now, with the same webhook-id and a fresh retry schedule",
)
async def replay_delivery(
    delivery_id: str, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    delivery = await container.callbacks.replay(account.id, delivery_id)
    return envelope.success(delivery_view(delivery))
