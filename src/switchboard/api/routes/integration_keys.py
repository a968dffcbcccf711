"""Native /api/v1/integration-keys: create (the key shown once), list and revoke a customer's keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from switchboard.api import envelope
from switchboard.api.dependencies import AccountDep, ContainerDep
from switchboard.domain.integration_keys import IntegrationKey

router = APIRouter(prefix="/api/v1/integration-keys", tags=["integration keys"])


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, description="what the key is for")


def key_view(key: IntegrationKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "hint": key.hint,
        "active": key.active,
        "createdAt": key.created_at.isoformat(),
        "lastUsedAt": key.last_used_at.isoformat() if key.last_used_at else None,
        "revokedAt": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@router.get("", summary="The customer's integration keys (never the keys themselves)")
async def list_keys(container: ContainerDep, account: AccountDep) -> dict[str, Any]:
    keys = await container.integration_keys.list(account.id)
    return envelope.success({"keys": [key_view(key) for key in keys]})


@router.post("", summary="Create a key; the `key` is in this answer only")
async def create_key(
    body: KeyRequest, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    key, plain = await container.integration_keys.create(account.id, body.name)
    return envelope.success({**key_view(key), "key": plain})


@router.delete("/{key_id}", summary="Revoke a key")
async def revoke_key(key_id: str, container: ContainerDep, account: AccountDep) -> dict[str, Any]:
    key = await container.integration_keys.revoke(account.id, key_id)
    return envelope.success(key_view(key))
