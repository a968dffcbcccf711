"""`switchboard prices …` and `switchboard customers topup|wallet`: the operator's billing."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from switchboard.domain.pricing import CSV_COLUMNS, OPTIONAL_COLUMNS, rule_row

prices_app = typer.Typer(
    help="Price tables: the platform's defaults and per-customer overrides.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file (or $SWITCHBOARD_CONFIG)."),
]
CustomerOption = Annotated[
    str | None,
    typer.Option("--customer", help="A customer's own prices (default: the platform's)."),
]
VolumeOption = Annotated[
    int,
    typer.Option(
        "--min-volume", min=0, help="Volume tier: units this month from which it applies."
    ),
]
T = TypeVar("T")


def _run(config: Path | None, job: Callable[[Any], Awaitable[T]]) -> T:
    from switchboard.cli.main import _with_container

    return _with_container(config, job)


def _print_json(value: Any) -> None:
    from switchboard.cli.main import _print_json as print_json

    print_json(value)


def _wallet_view(container: Any, customer_id: str, balance: Any, ledger_sum: int) -> dict[str, Any]:
    currency = container.billing.currency
    wallet = balance.wallet
    threshold = balance.low_balance_threshold
    return {
        "customerId": customer_id,
        "currency": currency.code,
        "balance": currency.format(wallet.balance),
        "creditLimit": currency.format(wallet.credit_limit),
        "available": currency.format(wallet.available),
        "held": currency.format(balance.held),
        "lowBalanceThreshold": None if threshold is None else currency.format(threshold),
        "ledgerSum": currency.format(ledger_sum),
        "billingEnabled": container.billing.enabled,
    }


@prices_app.command("import")
def prices_import(
    file: Annotated[
        Path, typer.Argument(help="CSV: channel,prefix,message_type,price[,min_volume]")
    ],
    customer: CustomerOption = None,
    merge: Annotated[bool, typer.Option(help="Add to the table instead of replacing it.")] = False,
    config: ConfigOption = None,
) -> None:
    """Import a price table; every row must be valid or nothing changes.

    Prices are decimals in the platform currency per SMS segment (per message on other
    channels); `*` is any message type or any destination; `prefix` is a country code or a
    longer number prefix.
    """
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        typer.echo(f"error: cannot read {file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None

    async def job(container: Any) -> int:
        count: int = await container.billing.import_prices(
            text.splitlines(), customer_id=customer, merge=merge
        )
        return count

    count = _run(config, job)
    _print_json({"imported": count, "customerId": customer, "merged": merge})


@prices_app.command("list")
def prices_list(
    customer: CustomerOption = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    config: ConfigOption = None,
) -> None:
    """Print a price table as CSV (the format `prices import` reads)."""
    from switchboard.ingest.csv_export import write_csv_rows

    async def job(container: Any) -> Any:
        rules = await container.billing.prices(customer_id=customer, channel=channel)
        return [rule_row(rule, container.billing.currency) for rule in rules]

    rows = _run(config, job)
    write_csv_rows(sys.stdout, [CSV_COLUMNS + OPTIONAL_COLUMNS, *rows])


@prices_app.command("set")
def prices_set(
    channel: Annotated[str, typer.Argument(help="SMS, WHATSAPP, RCS or EMAIL.")],
    prefix: Annotated[str, typer.Argument(help="Country code or longer prefix; * for any.")],
    message_type: Annotated[str, typer.Argument(help="OTP, TRANSACTIONAL, PROMOTIONAL or *.")],
    price: Annotated[str, typer.Argument(help="Per SMS segment or message, e.g. 0.0075.")],
    customer: CustomerOption = None,
    min_volume: VolumeOption = 0,
    config: ConfigOption = None,
) -> None:
    """Add or change one price."""

    async def job(container: Any) -> Any:
        rule = await container.billing.set_price(
            channel, prefix, message_type, price, customer_id=customer, min_volume=min_volume
        )
        return rule_row(rule, container.billing.currency)

    row = _run(config, job)
    _print_json(
        dict(zip(CSV_COLUMNS + OPTIONAL_COLUMNS, row, strict=True)) | {"customerId": customer}
    )


@prices_app.command("remove")
def prices_remove(
    channel: Annotated[str, typer.Argument(help="SMS, WHATSAPP, RCS or EMAIL.")],
    prefix: Annotated[str, typer.Argument(help="The rule's prefix; * for any.")],
    message_type: Annotated[str, typer.Argument(help="The rule's type; * for any.")],
    customer: CustomerOption = None,
    min_volume: VolumeOption = 0,
    config: ConfigOption = None,
) -> None:
    """Remove one price."""

    async def job(container: Any) -> bool:
        removed: bool = await container.billing.remove_price(
            channel, prefix, message_type, customer_id=customer, min_volume=min_volume
        )
        return removed

    if not _run(config, job):
        typer.echo("error: no such price", err=True)
        raise typer.Exit(1)
    _print_json({"removed": True})


def customers_topup(
    customer_id: str,
    amount: Annotated[str, typer.Argument(help="A positive decimal in the platform currency.")],
    reference: Annotated[
        str | None, typer.Option(help="Your reference for it (invoice, payment id).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Add money to a customer's wallet (a TOPUP ledger entry) and print the wallet."""

    async def job(container: Any) -> Any:
        _, entry = await container.billing.top_up(customer_id, amount, reference=reference)
        view = _wallet_view(
            container, customer_id, await container.billing.balance(customer_id),
            await container.billing.ledger_sum(customer_id),
        )  # fmt: skip
        return view | {"entryId": entry.id}

    _print_json(_run(config, job))


def customers_wallet(
    customer_id: str,
    credit_limit: Annotated[
        str | None, typer.Option(help="Postpaid: how far below zero sends may take the balance.")
    ] = None,
    low_balance: Annotated[
        str | None,
        typer.Option(help="Alert (wallet.low_balance callback) below this; '' for the default."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Show a customer's wallet; set its credit limit or low-balance threshold."""

    async def job(container: Any) -> Any:
        await container.accounts.get(customer_id)
        if credit_limit is not None or low_balance is not None:
            await container.billing.configure_wallet(
                customer_id, credit_limit=credit_limit, low_balance_threshold=low_balance
            )
        return _wallet_view(
            container, customer_id, await container.billing.balance(customer_id),
            await container.billing.ledger_sum(customer_id),
        )  # fmt: skip

    _print_json(_run(config, job))
