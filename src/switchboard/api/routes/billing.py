"""Native /api/v1 billing views for customers: prices, balance, ledger, usage reports (JSON or CSV).

Amounts are decimal strings in the platform currency (`currency` beside them), never floats.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from switchboard.api import envelope
from switchboard.api.dependencies import AccountDep, ContainerDep
from switchboard.domain.pricing import Currency, PriceRule, unit_name
from switchboard.domain.wallet import LedgerEntry, LedgerKind, UsageRow
from switchboard.ingest.csv_export import CsvCell, write_csv_rows

router = APIRouter(prefix="/api/v1", tags=["billing"])

_FORMAT = Query(default="json", alias="format", pattern="^(json|csv)$")


def _rule_view(rule: PriceRule, currency: Currency) -> dict[str, Any]:
    return {
        "channel": rule.channel.value,
        "prefix": rule.prefix or "*",
        "messageType": rule.message_type.value if rule.message_type else "*",
        "minVolume": rule.min_volume,
        "price": currency.format(rule.price),
        "unit": unit_name(rule.channel),
        "source": "customer" if rule.account_id else "platform",
    }


def _money(currency: Currency, amount: int) -> Decimal:
    """An amount as a Decimal with all its places: CSV writes it as a number (a negative one is
    no formula), JSON as its string."""
    return Decimal(currency.format(amount))


def _json_row(columns: Sequence[str], row: Sequence[CsvCell]) -> dict[str, Any]:
    return {
        name: str(cell) if isinstance(cell, Decimal) else cell
        for name, cell in zip(columns, row, strict=True)
    }


def _csv(rows: Iterable[Sequence[CsvCell]], filename: str) -> Response:
    buffer = io.StringIO()
    write_csv_rows(buffer, rows)
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/pricing", summary="What sends cost this customer, per channel and message type")
async def pricing(
    container: ContainerDep,
    account: AccountDep,
    country: str | None = Query(default=None, description="Calling code, e.g. 91"),
    channel: str | None = Query(default=None, description="SMS, WHATSAPP, RCS or EMAIL"),
) -> dict[str, Any]:
    billing = container.billing
    currency = billing.currency
    view = await billing.pricing(account.id, country=country, channel=channel)
    return envelope.success(
        {
            "billingEnabled": billing.enabled,
            "currency": currency.code,
            "countryCode": view.country,
            "prices": [
                {
                    "channel": p.channel.value,
                    "messageType": p.message_type.value,
                    "price": None if p.price is None else currency.format(p.price),
                    "unit": unit_name(p.channel),
                    "source": p.source,
                    "prefix": (p.rule.prefix or "*") if p.rule else None,
                    "minVolume": p.rule.min_volume if p.rule else None,
                }
                for p in view.effective
            ],
            "rules": [_rule_view(rule, currency) for rule in view.rules],
            "monthVolume": {c.value: units for c, units in sorted(view.volumes.items())},
        }
    )


@router.get("/account/balance", summary="The wallet: balance, credit limit, what is held")
async def balance(container: ContainerDep, account: AccountDep) -> dict[str, Any]:
    billing = container.billing
    currency = billing.currency
    view = await billing.balance(account.id)
    wallet = view.wallet
    threshold = view.low_balance_threshold
    return envelope.success(
        {
            "billingEnabled": billing.enabled,
            "currency": currency.code,
            "balance": currency.format(wallet.balance),
            "creditLimit": currency.format(wallet.credit_limit),
            "available": currency.format(wallet.available),
            "held": currency.format(view.held),
            "lowBalanceThreshold": None if threshold is None else currency.format(threshold),
            "lowBalance": threshold is not None and wallet.balance < threshold,
        }
    )


_LEDGER_COLUMNS = (
    "id", "type", "amount", "balanceAfter", "currency", "messageId", "campaignId",
    "verificationId", "messages", "units", "reference", "createdAt",
)  # fmt: skip


def _ledger_row(entry: LedgerEntry, currency: Currency) -> tuple[CsvCell, ...]:
    return (
        entry.id,
        entry.kind.value,
        _money(currency, entry.amount),
        _money(currency, entry.balance_after),
        currency.code,
        entry.message_id,
        entry.campaign_id,
        str(entry.verification_id) if entry.verification_id else None,
        entry.messages,
        entry.units,
        entry.reference,
        entry.created_at.isoformat(),
    )


@router.get("/account/ledger", summary="Every movement of the wallet, newest first (JSON or CSV)")
async def ledger(
    container: ContainerDep,
    account: AccountDep,
    before: int | None = Query(
        default=None, ge=1, le=2**63 - 1, description="Entries older than this id"
    ),
    limit: int = Query(default=50, ge=1, le=500),
    report_format: str = _FORMAT,
) -> Any:
    currency = container.billing.currency
    entries = await container.billing.ledger(account.id, before_id=before, limit=limit)
    rows = [_ledger_row(entry, currency) for entry in entries]
    if report_format == "csv":
        return _csv([_LEDGER_COLUMNS, *rows], f"ledger-{account.id}.csv")
    return envelope.success(
        {
            "entries": [_json_row(_LEDGER_COLUMNS, row) for row in rows],
            "nextBefore": entries[-1].id if len(entries) == limit else None,
        }
    )


_USAGE_COLUMNS = (
    "group", "messages", "segments", "delivered", "deliveredShare", "cost", "refunded",
    "currency",
)  # fmt: skip


def _usage_row(row: UsageRow, currency: Currency) -> tuple[CsvCell, ...]:
    return (
        row.key,
        row.messages,
        row.segments,
        row.delivered,
        row.delivered_share,
        _money(currency, row.cost),
        _money(currency, row.refunded),
        currency.code,
    )


@router.get(
    "/reports/usage",
    summary="Messages, segments, delivered share and cost per day, channel, country or type",
)
async def usage(
    container: ContainerDep,
    account: AccountDep,
    start: str | None = Query(default=None, alias="from", description="Date or ISO time"),
    end: str | None = Query(default=None, alias="to", description="Date (included) or ISO time"),
    group_by: str = Query(default="day", alias="groupBy"),
    report_format: str = _FORMAT,
) -> Any:
    currency = container.billing.currency
    report = await container.billing.usage(account.id, start=start, end=end, group_by=group_by)
    rows = [_usage_row(row, currency) for row in report.rows]
    if report_format == "csv":
        return _csv(
            [_USAGE_COLUMNS, *rows, _usage_row(report.total, currency)],
            f"usage-{report.start.date()}-{report.end.date()}.csv",
        )
    charged, charged_messages = report.ledger.get(LedgerKind.CHARGE, (0, 0))
    refunded, refunded_messages = report.ledger.get(LedgerKind.REFUND, (0, 0))
    topped_up, _ = report.ledger.get(LedgerKind.TOPUP, (0, 0))
    return envelope.success(
        {
            "from": report.start.isoformat(),
            "to": report.end.isoformat(),
            "groupBy": report.group_by,
            "currency": currency.code,
            "rows": [_json_row(_USAGE_COLUMNS, row) for row in rows],
            "total": _json_row(_USAGE_COLUMNS, _usage_row(report.total, currency)),
            "ledger": {
                "charged": currency.format(-charged),
                "chargedMessages": charged_messages,
                "refunded": currency.format(refunded),
                "refundedMessages": refunded_messages,
                "net": currency.format(-(charged + refunded)),
                "toppedUp": currency.format(topped_up),
            },
        }
    )
