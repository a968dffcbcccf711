"""`switchboard fraud blocks|safe-list`: what the fraud guard refused, and a customer's safe list."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

fraud_app = typer.Typer(
    help="The fraud guard: its records and the customers' safe lists.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file (or $SWITCHBOARD_CONFIG)."),
]


@fraud_app.command("blocks")
def fraud_blocks(
    customer_id: str,
    rule: Annotated[str | None, typer.Option(help="prefix_velocity, client_ip, …")] = None,
    prefix: Annotated[str | None, typer.Option(help="Destination or subject prefix.")] = None,
    action: Annotated[str | None, typer.Option(help="blocked or monitored.")] = None,
    since: Annotated[
        str | None, typer.Option(help="ISO 8601 time, e.g. 2026-12-02T10:00Z.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    config: ConfigOption = None,
) -> None:
    """The customer's fraud records, newest first (JSON lines)."""
    from switchboard.cli.main import _with_container
    from switchboard.fraud.guard import block_view
    from switchboard.fraud.store import BlockQuery

    moment = datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
    query = BlockQuery(rule=rule, prefix=prefix, action=action, since=moment, limit=limit)

    async def job(container: Any) -> list[Any]:
        blocks: list[Any] = await container.fraud.blocks(customer_id, query)
        return blocks

    for block in _with_container(config, job):
        typer.echo(json.dumps(block_view(block)))


@fraud_app.command("safe-list")
def fraud_safe_list(
    customer_id: str,
    set_entries: Annotated[
        list[str] | None,
        typer.Option("--set", help="Replace the list: +919876543210 or +9198765* (repeat)."),
    ] = None,
    clear: Annotated[bool, typer.Option(help="Empty the list.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show the customer's safe list, or replace it with --set / --clear."""
    from switchboard.cli.main import _with_container

    async def job(container: Any) -> list[str]:
        if clear or set_entries:
            replaced: list[str] = await container.fraud.replace_safe_list(
                customer_id, [] if clear else set_entries
            )
            return replaced
        entries: list[str] = await container.fraud.safe_list(customer_id)
        return entries

    typer.echo(json.dumps({"customerId": customer_id, "entries": _with_container(config, job)}))
