"""Billing: price tables, price quotes, wallets and top-ups, the ledger and usage reports.

Charging itself happens in storage, inside the transactions that queue and settle messages
(docs/adr/0008-pricing-and-wallet.md); this service is what operators and customers ask.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from switchboard.clock import Clock
from switchboard.domain.messages import Channel, MessageType
from switchboard.domain.pricing import (
    Billable,
    Currency,
    PriceRule,
    choose_rule,
    parse_price_table,
    parse_rule,
    period_of,
    price_billables,
)
from switchboard.domain.wallet import LedgerEntry, LedgerKind, UsageRow, Wallet
from switchboard.errors import InvalidRequestError, NotFoundError
from switchboard.storage.base import AccountStore, PriceStore, UsageReports, WalletStore

USAGE_GROUPS = ("day", "channel", "country", "messageType")
MAX_REPORT_DAYS = 366
MAX_LEDGER_PAGE = 500
MAX_REFERENCE = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class EffectivePrice:
    """What one unit costs now for a channel and message type; `source` says whose rule."""

    channel: Channel
    message_type: MessageType
    price: int | None  # None: no rule and no default, such sends are refused
    source: str | None  # "customer", "platform", "default"
    rule: PriceRule | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PricingView:
    country: str | None
    effective: list[EffectivePrice]
    rules: list[PriceRule]
    volumes: dict[Channel, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    wallet: Wallet
    held: int
    low_balance_threshold: int | None  # the customer's own, else the platform default


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageReport:
    start: datetime
    end: datetime
    group_by: str
    rows: list[UsageRow]
    total: UsageRow
    ledger: dict[LedgerKind, tuple[int, int]]


class BillingService:
    def __init__(
        self,
        prices: PriceStore,
        wallets: WalletStore,
        usage: UsageReports,
        accounts: AccountStore,
        clock: Clock,
        *,
        currency: Currency,
        enabled: bool,
        default_price: int | None = None,
        low_balance_threshold: int | None = None,
        free_destinations: frozenset[str] = frozenset(),
    ) -> None:
        self._prices = prices
        self._wallets = wallets
        self._usage = usage
        self._accounts = accounts
        self._clock = clock
        self.currency = currency
        self.enabled = enabled
        self._default_price = default_price
        self._threshold = low_balance_threshold
        self._free = free_destinations

    # -- price tables (operator) ------------------------------------------------------------

    async def import_prices(
        self, lines: Iterable[str], *, customer_id: str | None = None, merge: bool = False
    ) -> int:
        """Import a CSV price table for the platform or one customer; all rows or none.

        Without `merge` the scope's table becomes exactly the file; with it, the file's rules
        are added or replace the ones with the same channel, prefix, type and volume.
        """
        await self._require_customer(customer_id)
        rules = parse_price_table(lines, self.currency, customer_id)
        now = self._clock.now()
        if merge:
            return await self._prices.merge_rules(rules, now)
        return await self._prices.replace_rules(customer_id, rules, now)

    async def prices(
        self, *, customer_id: str | None = None, channel: str | None = None
    ) -> list[PriceRule]:
        await self._require_customer(customer_id)
        return await self._prices.list_rules(customer_id, _channel(channel) if channel else None)

    async def set_price(
        self,
        channel: str,
        prefix: str,
        message_type: str,
        price: str,
        *,
        customer_id: str | None = None,
        min_volume: int = 0,
    ) -> PriceRule:
        await self._require_customer(customer_id)
        rule = self._rule(channel, prefix, message_type, price, customer_id, min_volume)
        await self._prices.merge_rules([rule], self._clock.now())
        return rule

    async def remove_price(
        self,
        channel: str,
        prefix: str,
        message_type: str,
        *,
        customer_id: str | None = None,
        min_volume: int = 0,
    ) -> bool:
        await self._require_customer(customer_id)
        rule = self._rule(channel, prefix, message_type, "0", customer_id, min_volume)
        return await self._prices.remove_rule(rule)

    def _rule(
        self,
        channel: str,
        prefix: str,
        message_type: str,
        price: str,
        customer_id: str | None,
        min_volume: int,
    ) -> PriceRule:
        fields = {"channel": channel, "prefix": prefix, "message_type": message_type,
                  "price": price, "min_volume": str(min_volume)}  # fmt: skip
        try:
            return parse_rule(fields, self.currency, customer_id)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None

    # -- prices (customer) ------------------------------------------------------------------

    async def pricing(
        self, account_id: str, *, country: str | None = None, channel: str | None = None
    ) -> PricingView:
        """The prices that apply to the customer now: per channel and message type the
        effective unit price at this month's volume, and every rule that can apply."""
        country_code = (country or "").strip().lstrip("+")
        if country_code and (not country_code.isdigit() or len(country_code) > 4):
            raise InvalidRequestError("country must be a calling code, e.g. 91")
        channels = [_channel(channel)] if channel else list(Channel)
        rules = await self._prices.rules_for_country(account_id, country_code, channels)
        volumes = await self._prices.volumes(account_id, period_of(self._clock.now()))
        effective = []
        for each in channels:
            digits = "" if each is Channel.EMAIL else country_code
            for message_type in MessageType:
                rule = choose_rule(
                    rules, account_id=account_id, channel=each, digits=digits,
                    message_type=message_type, volume=volumes.get(each, 0),
                )  # fmt: skip
                if rule is not None:
                    price, source = rule.price, "customer" if rule.account_id else "platform"
                elif self._default_price is not None:
                    price, source = self._default_price, "default"
                else:
                    price, source = None, None
                effective.append(
                    EffectivePrice(
                        channel=each, message_type=message_type, price=price, source=source,
                        rule=rule,
                    )
                )  # fmt: skip
        return PricingView(
            country=country_code or None, effective=effective, rules=rules, volumes=volumes
        )

    async def quote(
        self,
        account_id: str,
        items: Sequence[Billable],
        *,
        volume_offset: Mapping[Channel, int] | None = None,
    ) -> int | None:
        """What `items` would be charged now (a dry run); None while billing is off.

        `volume_offset` adds units already quoted (earlier batches of the same dry run).
        Raises InvalidRequestError, as the send would, when an item has no price.
        """
        if not self.enabled or not items:
            return None if not self.enabled else 0
        channels = {item.channel for item in items}
        rules = await self._prices.applicable_rules(
            account_id, channels, {item.destination for item in items}
        )
        volumes = await self._prices.volumes(account_id, period_of(self._clock.now()))
        for channel, units in (volume_offset or {}).items():
            volumes[channel] = volumes.get(channel, 0) + units
        charges = price_billables(
            rules, account_id, items, volumes, default_price=self._default_price,
            free_destinations=self._free,
        )  # fmt: skip
        return sum(charges)

    # -- wallets ------------------------------------------------------------------------------

    async def top_up(
        self, customer_id: str, amount: str, *, reference: str | None = None
    ) -> tuple[Wallet, LedgerEntry]:
        value = self._amount(amount, "amount")
        if value <= 0:
            raise InvalidRequestError("a top-up amount must be positive")
        if reference is not None and len(reference) > MAX_REFERENCE:
            raise InvalidRequestError(f"the reference is longer than {MAX_REFERENCE} characters")
        return await self._wallets.top_up(
            customer_id, value, self._clock.now(), reference=reference,
            default_threshold=self._threshold,
        )  # fmt: skip

    async def configure_wallet(
        self,
        customer_id: str,
        *,
        credit_limit: str | None = None,
        low_balance_threshold: str | None = None,
    ) -> Wallet:
        """Set a postpaid credit limit and/or a low-balance threshold ('' back to the default)."""
        changes: dict[str, int | None] = {}
        if credit_limit is not None:
            changes["credit_limit"] = self._amount(credit_limit, "credit limit")
        if low_balance_threshold is not None:
            changes["low_balance_threshold"] = (
                self._amount(low_balance_threshold, "low-balance threshold")
                if low_balance_threshold.strip()
                else None
            )
        return await self._wallets.configure(customer_id, self._clock.now(), **changes)

    async def balance(self, account_id: str) -> Balance:
        wallet = await self._wallets.get_wallet(account_id) or Wallet(
            account_id=account_id, balance=0
        )
        threshold = (
            wallet.low_balance_threshold
            if wallet.low_balance_threshold is not None
            else self._threshold
        )
        return Balance(
            wallet=wallet,
            held=await self._wallets.held(account_id),
            low_balance_threshold=threshold,
        )

    async def ledger(
        self, account_id: str, *, before_id: int | None = None, limit: int = 50
    ) -> list[LedgerEntry]:
        return await self._wallets.ledger(
            account_id, before_id=before_id, limit=max(1, min(limit, MAX_LEDGER_PAGE))
        )

    async def ledger_sum(self, account_id: str) -> int:
        return await self._wallets.ledger_sum(account_id)

    # -- usage ----------------------------------------------------------------------------------

    async def usage(
        self,
        account_id: str,
        *,
        start: str | None = None,
        end: str | None = None,
        group_by: str | None = None,
    ) -> UsageReport:
        """Messages accepted in the range, grouped, with the ledger's charges and refunds made
        in the same range. `start`/`end` are dates (the end day included) or ISO times;
        the default is the current month (UTC) up to the end of today."""
        group = group_by or "day"
        if group not in USAGE_GROUPS:
            raise InvalidRequestError(f"groupBy must be one of {', '.join(USAGE_GROUPS)}")
        now = self._clock.now()
        begin = _moment(start, "from", end_of_day=False) if start else _month_start(now)
        until = _moment(end, "to", end_of_day=True) if end else _day_end(now)
        if until <= begin:
            raise InvalidRequestError("'to' must be after 'from'")
        if until - begin > timedelta(days=MAX_REPORT_DAYS):
            raise InvalidRequestError(f"a report spans at most {MAX_REPORT_DAYS} days")
        rows = await self._usage.usage(account_id, begin, until, group)
        total = UsageRow(
            key="total",
            messages=sum(r.messages for r in rows),
            segments=sum(r.segments for r in rows),
            delivered=sum(r.delivered for r in rows),
            cost=sum(r.cost for r in rows),
            refunded=sum(r.refunded for r in rows),
        )
        ledger = await self._wallets.ledger_totals(account_id, begin, until)
        return UsageReport(
            start=begin, end=until, group_by=group, rows=rows, total=total, ledger=ledger
        )

    # -- helpers ----------------------------------------------------------------------------------

    def _amount(self, raw: str, what: str) -> int:
        try:
            return self.currency.to_minor(raw)
        except ValueError as exc:
            raise InvalidRequestError(f"{what}: {exc}") from None

    async def _require_customer(self, customer_id: str | None) -> None:
        if customer_id is not None and await self._accounts.get_account(customer_id) is None:
            raise NotFoundError(f"no customer {customer_id}")


def _channel(raw: str) -> Channel:
    try:
        return Channel(raw.strip().upper())
    except ValueError:
        raise InvalidRequestError(
            f"channel '{raw}' is not one of {', '.join(c.value for c in Channel)}"
        ) from None


def _month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _day_end(now: datetime) -> datetime:
    return _month_start(now).replace(day=now.astimezone(UTC).day) + timedelta(days=1)


def _moment(raw: str, name: str, *, end_of_day: bool) -> datetime:
    """'2026-11-25' (a whole day: its end is the next midnight) or an ISO 8601 time (UTC if
    no offset is given)."""
    value = raw.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time(), tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(
            f"'{name}' must be a date (2026-11-25) or an ISO 8601 time"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
