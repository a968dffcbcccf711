"""`switchboard bounces receive`: a bounce e-mail on standard input, from the MTA's pipe alias."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

bounces_app = typer.Typer(help="E-mail bounces (DSNs) of our mail.", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file (or $SWITCHBOARD_CONFIG)."),
]
_MAX_BYTES = 10 * 1024 * 1024


@bounces_app.command("receive")
def bounces_receive(
    connector: Annotated[
        str | None,
        typer.Option(help="The smtp connector the bounce belongs to (default: the only one)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Store the delivery report of one bounce read from standard input.

    For a Postfix alias: `bounces: "|/usr/local/bin/switchboard bounces receive"`. Exits 0
    when stored and when the message is not a bounce of ours (so the MTA never bounces the
    bounce), 75 (EX_TEMPFAIL: the MTA retries) when it could not be stored."""
    from switchboard.channels.email import EmailDriver
    from switchboard.cli.main import _with_container

    raw = sys.stdin.buffer.read(_MAX_BYTES + 1)
    if len(raw) > _MAX_BYTES:
        typer.echo("error: the message is larger than 10 MiB; not a bounce", err=True)
        raise typer.Exit(0)

    async def job(container: Any) -> str:
        drivers = [
            d
            for d in container.drivers.values()
            if isinstance(d, EmailDriver) and (connector is None or d.name == connector)
        ]
        if len(drivers) != 1:
            names = ", ".join(d.name for d in container.drivers.values())
            raise typer.BadParameter(
                f"name one smtp connector with --connector (connectors: {names})"
            )
        report = drivers[0].parse_bounce(raw)
        if report is None:
            return "not a bounce of ours: ignored"
        await container.sink.on_report(report)
        return f"stored: {report.state.value} for {report.provider_id}"

    try:
        typer.echo(_with_container(config, job))
    except typer.Exit:
        raise
    except Exception as exc:  # the MTA keeps the message and tries again later
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(75) from None
