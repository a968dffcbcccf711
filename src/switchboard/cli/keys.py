"""`switchboard keys create|list|revoke`: a customer's integration keys, for CRMs and other partners."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from switchboard.domain.integration_keys import IntegrationKey

keys_app = typer.Typer(
    help="Integration keys: what a CRM uses instead of the customer's password.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file (or $SWITCHBOARD_CONFIG)."),
]


def key_view(key: IntegrationKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "customerId": key.account_id,
        "name": key.name,
        "hint": key.hint,
        "active": key.active,
        "createdAt": key.created_at.isoformat(),
        "lastUsedAt": key.last_used_at.isoformat() if key.last_used_at else None,
        "revokedAt": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@keys_app.command("create")
def keys_create(
    customer_id: str,
    name: Annotated[str, typer.Option(help="What the key is for, e.g. CleverTap.")],
    config: ConfigOption = None,
) -> None:
    """Create a key and print it once (it cannot be shown again)."""
    from switchboard.cli.main import _with_container

    async def job(container: Any) -> tuple[IntegrationKey, str]:
        created: tuple[IntegrationKey, str] = await container.integration_keys.create(
            customer_id, name
        )
        return created

    key, plain = _with_container(config, job)
    typer.echo(json.dumps({**key_view(key), "key": plain}, indent=2))


@keys_app.command("list")
def keys_list(customer_id: str, config: ConfigOption = None) -> None:
    """The customer's keys (JSON lines), never the keys themselves."""
    from switchboard.cli.main import _with_container

    async def job(container: Any) -> list[IntegrationKey]:
        keys: list[IntegrationKey] = await container.integration_keys.list(customer_id)
        return keys

    for key in _with_container(config, job):
        typer.echo(json.dumps(key_view(key)))


@keys_app.command("revoke")
def keys_revoke(customer_id: str, key_id: str, config: ConfigOption = None) -> None:
    """Revoke a key: every later request with it is refused."""
    from switchboard.cli.main import _with_container

    async def job(container: Any) -> IntegrationKey:
        key: IntegrationKey = await container.integration_keys.revoke(customer_id, key_id)
        return key

    typer.echo(json.dumps(key_view(_with_container(config, job)), indent=2))
