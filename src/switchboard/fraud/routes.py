"""Native /api/v1/fraud: the guard's records (`blocks`) and the account's safe list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from switchboard.api import envelope
from switchboard.api.dependencies import AccountDep, ContainerDep
from switchboard.errors import InvalidRequestError
from switchboard.fraud.guard import block_view
from switchboard.fraud.rules import Rule
from switchboard.fraud.store import BlockQuery

router = APIRouter(prefix="/api/v1/fraud", tags=["fraud"])


class SafeList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entries: list[str] = Field(
        description="E.164 numbers (+919876543210) and prefixes ending in '*' (+9198765*)"
    )


def _since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(f"since '{raw}' is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/blocks", summary="What the fraud guard refused (and saw under monitor-only)")
async def list_blocks(
    container: ContainerDep,
    account: AccountDep,
    rule: str | None = Query(default=None, description="prefix_velocity, client_ip, …"),
    prefix: str | None = Query(default=None, description="destination or subject prefix"),
    action: str | None = Query(default=None, pattern="^(blocked|monitored)$"),
    since: str | None = Query(default=None, description="ISO 8601, e.g. 2026-12-02T10:00:00Z"),
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    if rule is not None and rule not in {r.value for r in Rule}:
        raise InvalidRequestError(f"rule '{rule}' is not one of {', '.join(r.value for r in Rule)}")
    query = BlockQuery(rule=rule, prefix=prefix, action=action, since=_since(since), limit=limit)
    blocks = await container.fraud.blocks(account.id, query)
    return envelope.success({"blocks": [block_view(b) for b in blocks]})


@router.get("/safe-list", summary="Numbers and prefixes the fraud guard lets through")
async def get_safe_list(container: ContainerDep, account: AccountDep) -> dict[str, Any]:
    return envelope.success({"entries": await container.fraud.safe_list(account.id)})


@router.put("/safe-list", summary="Replace the safe list")
async def put_safe_list(
    body: SafeList, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    entries = await container.fraud.replace_safe_list(account.id, body.entries)
    return envelope.success({"entries": entries})
