"""`switchboard clevertap show|set`: a customer's CleverTap callback URL, country, reply numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from switchboard.integrations.clevertap.service import settings_view
from switchboard.integrations.clevertap.store import CleverTapSettings

clevertap_app = typer.Typer(
    help="CleverTap as an SMS provider: where delivery reports go, how national numbers read.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file (or $SWITCHBOARD_CONFIG)."),
]


@clevertap_app.command("show")
def clevertap_show(customer_id: str, config: ConfigOption = None) -> None:
    """The customer's CleverTap settings."""
    from switchboard.cli.main import _with_container

    async def job(container: Any) -> CleverTapSettings:
        found: CleverTapSettings = await container.clevertap.settings(customer_id)
        return found

    typer.echo(json.dumps(settings_view(_with_container(config, job)), indent=2))


@clevertap_app.command("set")
def clevertap_set(
    customer_id: str,
    callback_url: Annotated[
        str | None,
        typer.Option(help="CleverTap's Callback URL (provider Setup tab); '' removes it."),
    ] = None,
    default_country: Annotated[
        str | None, typer.Option(help="Country code for a national $$To, e.g. 91; '' removes it.")
    ] = None,
    reply_number: Annotated[
        list[str] | None,
        typer.Option(
            help="Own number (E.164 or short code) whose replies go to CleverTap; "
            "repeat it; replaces the list."
        ),
    ] = None,
    no_reply_numbers: Annotated[
        bool, typer.Option("--no-reply-numbers", help="Forward no replies.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Change what is given; the callback URL passes the callback SSRF rules."""
    from switchboard.cli.main import _with_container

    changes: dict[str, Any] = {}
    if callback_url is not None:
        changes["callback_url"] = callback_url
    if default_country is not None:
        changes["default_country_code"] = default_country
    if reply_number or no_reply_numbers:
        changes["reply_numbers"] = [] if no_reply_numbers else reply_number
    if not changes:
        raise typer.BadParameter(
            "give --callback-url, --default-country, --reply-number or --no-reply-numbers"
        )

    async def job(container: Any) -> CleverTapSettings:
        updated: CleverTapSettings = await container.clevertap.configure(customer_id, **changes)
        return updated

    typer.echo(json.dumps(settings_view(_with_container(config, job)), indent=2))
