"""Price rules in SQL: the platform's defaults and each customer's own, and monthly volumes."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.domain.messages import Channel, MessageType
from switchboard.domain.pricing import ANY, PriceRule, destination_digits, prefixes_of
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import billing_usage, price_rules

p = price_rules.c
u = billing_usage.c
PLATFORM = ""  # price_rules.account_id of the platform's defaults
# Below this many distinct destinations, rules are looked up by their possible prefixes;
# above it (campaign batches), the channel's whole table for the account is read once.
_PREFIX_LOOKUP_MAX = 8


def _scope(account_id: str | None) -> str:
    return account_id or PLATFORM


def _rule(row: sa.Row[Any]) -> PriceRule:
    return PriceRule(
        channel=Channel(row.channel),
        prefix=row.prefix,
        message_type=None if row.message_type == ANY else MessageType(row.message_type),
        price=int(row.price),
        min_volume=int(row.min_volume),
        account_id=row.account_id or None,
    )


def _values(rule: PriceRule, now: datetime) -> dict[str, Any]:
    return {
        "account_id": _scope(rule.account_id),
        "channel": rule.channel.value,
        "prefix": rule.prefix,
        "message_type": rule.message_type.value if rule.message_type else ANY,
        "min_volume": rule.min_volume,
        "price": rule.price,
        "updated_at": now,
    }


def _key_condition(rule: PriceRule) -> sa.ColumnElement[bool]:
    return sa.and_(
        p.account_id == _scope(rule.account_id),
        p.channel == rule.channel.value,
        p.prefix == rule.prefix,
        p.message_type == (rule.message_type.value if rule.message_type else ANY),
        p.min_volume == rule.min_volume,
    )


async def load_rules(
    connection: AsyncConnection,
    account_id: str,
    channels: Collection[Channel],
    destinations: Collection[str],
) -> list[PriceRule]:
    """The platform's and the account's rules that may price sends to `destinations`."""
    query = sa.select(price_rules).where(
        p.account_id.in_([PLATFORM, account_id]), p.channel.in_([c.value for c in channels])
    )
    digits = {destination_digits(d) for d in destinations}
    if len(digits) <= _PREFIX_LOOKUP_MAX:
        query = query.where(p.prefix.in_({x for d in digits for x in prefixes_of(d)}))
    return [_rule(row) for row in await connection.execute(query)]


async def month_volumes(
    connection: AsyncConnection, account_id: str, period: str
) -> dict[Channel, int]:
    rows = await connection.execute(
        sa.select(u.channel, u.units).where(u.account_id == account_id, u.period == period)
    )
    return {Channel(row.channel): int(row.units) for row in rows}


async def add_volume(
    connection: AsyncConnection, account_id: str, period: str, channel: Channel, units: int
) -> None:
    """Count units into the month (negative: given back by a refund, never below 0).

    Callers hold the account's wallet row lock, so the update-then-insert cannot race.
    """
    if units == 0:
        return
    updated = await connection.execute(
        billing_usage.update()
        .where(u.account_id == account_id, u.period == period, u.channel == channel.value)
        .values(units=sa.case((u.units + units < 0, 0), else_=u.units + units))
    )
    if updated.rowcount == 0 and units > 0:
        await connection.execute(
            billing_usage.insert().values(
                account_id=account_id, period=period, channel=channel.value, units=units
            )
        )


class SqlPriceStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def list_rules(
        self, account_id: str | None, channel: Channel | None = None
    ) -> list[PriceRule]:
        """One scope's rules (None: the platform's), ordered like a price table."""
        query = sa.select(price_rules).where(p.account_id == _scope(account_id))
        if channel is not None:
            query = query.where(p.channel == channel.value)
        query = query.order_by(p.channel, p.prefix, p.message_type, p.min_volume)
        async with self._db.read() as connection:
            return [_rule(row) for row in await connection.execute(query)]

    async def replace_rules(
        self, account_id: str | None, rules: Sequence[PriceRule], now: datetime
    ) -> int:
        """The scope's table becomes exactly `rules`, in one transaction."""
        async with self._db.write() as connection:
            await connection.execute(price_rules.delete().where(p.account_id == _scope(account_id)))
            if rules:
                await connection.execute(
                    price_rules.insert(), [_values(rule, now) for rule in rules]
                )
        return len(rules)

    async def merge_rules(self, rules: Sequence[PriceRule], now: datetime) -> int:
        """Add or replace each rule by its key (scope, channel, prefix, type, volume)."""
        async with self._db.write() as connection:
            for rule in rules:
                await connection.execute(price_rules.delete().where(_key_condition(rule)))
            if rules:
                await connection.execute(
                    price_rules.insert(), [_values(rule, now) for rule in rules]
                )
        return len(rules)

    async def remove_rule(self, rule: PriceRule) -> bool:
        """Remove the rule with `rule`'s key (its price is ignored)."""
        async with self._db.write() as connection:
            removed = await connection.execute(price_rules.delete().where(_key_condition(rule)))
        return bool(removed.rowcount)

    async def rules_for_country(
        self, account_id: str, country_code: str, channels: Collection[Channel]
    ) -> list[PriceRule]:
        """The platform's and the account's rules that can price a send into a country: those
        whose prefix the country code starts with, and longer ones inside it."""
        query = sa.select(price_rules).where(
            p.account_id.in_([PLATFORM, account_id]), p.channel.in_([c.value for c in channels])
        )
        if country_code:
            query = query.where(
                sa.or_(
                    p.prefix.in_(prefixes_of(country_code)),
                    p.prefix.startswith(country_code, autoescape=True),
                )
            )
        query = query.order_by(p.channel, p.prefix, p.message_type, p.min_volume)
        async with self._db.read() as connection:
            return [_rule(row) for row in await connection.execute(query)]

    async def applicable_rules(
        self, account_id: str, channels: Collection[Channel], destinations: Collection[str]
    ) -> list[PriceRule]:
        async with self._db.read() as connection:
            return await load_rules(connection, account_id, channels, destinations)

    async def volumes(self, account_id: str, period: str) -> dict[Channel, int]:
        async with self._db.read() as connection:
            return await month_volumes(connection, account_id, period)
