"""`switchboard operators create|list`: the console's operator accounts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

operators_app = typer.Typer(
    help="Operators: who may open the console's admin view.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file (or $SWITCHBOARD_CONFIG)."),
]


@operators_app.command("create")
def operators_create(
    email: Annotated[str, typer.Option(help="The operator's e-mail (the login).")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True, help="12+ characters."
        ),
    ],
    config: ConfigOption = None,
) -> None:
    """Create an operator who signs in at /console/admin/."""
    from switchboard.cli.main import _with_container

    async def job(container: Any) -> Any:
        return await container.console.operators.create(email, password)

    operator = _with_container(config, job)
    typer.echo(json.dumps({"id": operator.id, "email": operator.email}))


@operators_app.command("list")
def operators_list(config: ConfigOption = None) -> None:
    """Every operator (JSON lines), never their password hashes."""
    from switchboard.cli.main import _with_container

    async def job(container: Any) -> Any:
        return await container.console.operators.list()

    for operator in _with_container(config, job):
        typer.echo(
            json.dumps({"id": operator.id, "email": operator.email, "enabled": operator.enabled})
        )
