"""Wallets in SQL: charges taken inside the transactions that queue messages, settled and
refunded inside the ones that change their status; top-ups, the ledger, the balance.

Every movement inserts a `ledger_entries` row and moves `wallets.balance` by the same amount
under the wallet's row lock (FOR UPDATE on PostgreSQL; SQLite has one writer), so the balance
is always the ledger's sum and two concurrent sends cannot both spend the last of it.

Lock order: a transaction takes the wallet lock after any message rows it changes. Charges
are taken just before new messages are inserted (rows no one else can hold); credits from
status changes are collected and written by a `before_commit` hook, the transaction's last
statements. A worker settling a message and a resend cancelling the same verification's
steps therefore never wait on each other in opposite orders.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.clock import Clock
from switchboard.domain import encoding
from switchboard.domain.callbacks import WALLET_EVENTS, new_webhook_id
from switchboard.domain.messages import Channel, MessageRecord, MessageStatus
from switchboard.domain.pricing import (
    Billable,
    Currency,
    billable_units,
    period_of,
    price_billables,
)
from switchboard.domain.wallet import (
    LOW_BALANCE_EVENT,
    ChargeState,
    LedgerEntry,
    LedgerKind,
    Wallet,
    charge_transition,
    is_low,
    low_balance_payload,
)
from switchboard.errors import InsufficientFundsError, NotFoundError
from switchboard.storage.sql.callbacks import add_delivery, load_endpoint
from switchboard.storage.sql.charges import MessageCharges
from switchboard.storage.sql.engines import Database, after_commit, before_commit
from switchboard.storage.sql.prices import add_volume, load_rules, month_volumes
from switchboard.storage.sql.queue import StatusListener
from switchboard.storage.sql.tables import accounts, ledger_entries, messages, wallets

w = wallets.c
e = ledger_entries.c
m = messages.c
_CHUNK = 500
_UNSENT = (MessageStatus.HELD.value, MessageStatus.QUEUED.value, MessageStatus.SENDING.value)
_ENTRY_FIELDS = (
    "kind", "amount", "message_id", "campaign_id", "verification_id", "messages", "units",
    "reference",
)  # fmt: skip


def _wallet(row: sa.Row[Any]) -> Wallet:
    return Wallet(
        account_id=row.account_id,
        balance=int(row.balance),
        credit_limit=int(row.credit_limit),
        low_balance_threshold=row.low_balance_threshold,
        low_balance_alerted=bool(row.low_balance_alerted),
    )


def _entry(row: sa.Row[Any]) -> LedgerEntry:
    return LedgerEntry(
        id=int(row.id),
        account_id=row.account_id,
        kind=LedgerKind(row.kind),
        amount=int(row.amount),
        balance_after=int(row.balance_after),
        created_at=row.created_at,
        message_id=row.message_id,
        campaign_id=row.campaign_id,
        verification_id=row.verification_id,
        messages=int(row.messages),
        units=int(row.units),
        reference=row.reference,
    )


def _units_column() -> sa.ColumnElement[int]:
    return sa.case((m.channel == Channel.SMS.value, m.segments), else_=1)


async def lock_wallet(connection: AsyncConnection, account_id: str, now: datetime) -> Wallet:
    """The account's wallet, locked until the transaction ends; created (empty) if missing."""
    query = sa.select(wallets).where(w.account_id == account_id).with_for_update()
    row = (await connection.execute(query)).first()
    if row is None:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        await connection.execute(
            dialect.insert(wallets)
            .values(account_id=account_id, balance=0, created_at=now, updated_at=now)
            .on_conflict_do_nothing()
        )
        row = (await connection.execute(query)).one()
    return _wallet(row)


@dataclass(frozen=True, slots=True, kw_only=True)
class Movement:
    """One ledger entry to write; the balance after it is worked out under the lock."""

    kind: LedgerKind
    amount: int
    message_id: str | None = None
    campaign_id: str | None = None
    verification_id: int | None = None
    messages: int = 0
    units: int = 0
    reference: str | None = None
    channel: Channel | None = None  # whose monthly volume the units count in
    account_id: str | None = None  # for credits gathered across accounts


async def move(
    connection: AsyncConnection, wallet: Wallet, movements: Sequence[Movement], now: datetime
) -> Wallet:
    """Write `movements` to the ledger and the wallet (locked by the caller); the new wallet."""
    balance = wallet.balance
    rows = []
    for movement in movements:
        balance += movement.amount
        rows.append(
            {
                **{name: getattr(movement, name) for name in _ENTRY_FIELDS},
                "kind": movement.kind.value,
                "reference": (movement.reference or "")[:200] or None,
                "account_id": wallet.account_id,
                "balance_after": balance,
                "created_at": now,
            }
        )
    if rows:
        await connection.execute(ledger_entries.insert(), rows)
        await connection.execute(
            wallets.update()
            .where(w.account_id == wallet.account_id)
            .values(balance=balance, updated_at=now)
        )
    return replace(wallet, balance=balance)


@dataclass(slots=True)
class _Pending:
    """What a transaction's status changes did to charges, written before it commits."""

    settle: set[str] = field(default_factory=set)
    refund: set[str] = field(default_factory=set)
    sweep: set[int] = field(default_factory=set)  # verifications whose later steps were cancelled
    credits: list[Movement] = field(default_factory=list)


class SqlCharges(MessageCharges, StatusListener):
    """Prices and charges messages as they are queued; settles and refunds as their status
    changes. Plugged into the stores that queue messages and composed into the queue's
    status listeners (bootstrap, when `billing.enabled`)."""

    def __init__(
        self,
        clock: Clock,
        currency: Currency,
        *,
        default_price: int | None = None,
        refund_rejected: bool = False,
        low_balance_threshold: int | None = None,
        free_destinations: frozenset[str] = frozenset(),
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._clock = clock
        self._currency = currency
        self._default_price = default_price
        self._refund_rejected = refund_rejected
        self._threshold = low_balance_threshold
        self._free = free_destinations
        self._wake = wake
        self._pending: weakref.WeakKeyDictionary[AsyncConnection, _Pending] = (
            weakref.WeakKeyDictionary()
        )

    # -- acceptance -----------------------------------------------------------------------

    async def on_accept(
        self, connection: AsyncConnection, batch: Sequence[MessageRecord]
    ) -> list[MessageRecord]:
        """Price `batch` and charge its account, in the transaction that inserts it; returns
        the messages carrying their charge. Raises InsufficientFundsError (the transaction
        rolls back: nothing is queued) or InvalidRequestError for a send with no price."""
        await self._flush(connection)  # a resend's refunds count before its charge
        priced: list[MessageRecord] = []
        ordered = sorted(batch, key=lambda x: x.account_id)
        for account_id, group in groupby(ordered, key=lambda x: x.account_id):
            priced += await self._charge(connection, account_id, list(group))
        return priced

    async def _charge(
        self, connection: AsyncConnection, account_id: str, batch: list[MessageRecord]
    ) -> list[MessageRecord]:
        now = self._clock.now()
        batch = [_with_segments(x) for x in batch]
        channels = {x.channel for x in batch}
        rules = await load_rules(connection, account_id, channels, {x.destination for x in batch})
        wallet = await lock_wallet(connection, account_id, now)
        period = period_of(now)
        units = [billable_units(x.channel, x.segments) for x in batch]
        billables = [
            Billable(channel=x.channel, message_type=x.message_type, destination=x.destination,
                     units=n)
            for x, n in zip(batch, units, strict=True)
        ]  # fmt: skip
        charges = price_billables(
            rules,
            account_id,
            billables,
            await month_volumes(connection, account_id, period),
            default_price=self._default_price,
            free_destinations=self._free,
        )
        total = sum(charges)
        if total > wallet.available:
            money = self._currency
            raise InsufficientFundsError(
                f"insufficient balance: this send costs {money.format(total)} {money.code} and "
                f"{money.format(max(wallet.available, 0))} {money.code} is available; "
                "top up the account and send again"
            )
        priced = [
            replace(x, charge=c, charge_state=ChargeState.HELD.value if c else None)
            for x, c in zip(batch, charges, strict=True)
        ]
        movements = _charge_movements(priced, units)
        wallet = await move(connection, wallet, movements, now)
        for channel in channels:
            used = sum(n for x, n in zip(batch, units, strict=True) if x.channel is channel)
            await add_volume(connection, account_id, period, channel, used)
        if total:
            await self._alert_if_low(connection, wallet, now)
        return priced

    async def _alert_if_low(
        self, connection: AsyncConnection, wallet: Wallet, now: datetime
    ) -> None:
        threshold = (
            wallet.low_balance_threshold
            if wallet.low_balance_threshold is not None
            else self._threshold
        )
        if not is_low(wallet, threshold):
            return
        assert threshold is not None
        await connection.execute(
            wallets.update()
            .where(w.account_id == wallet.account_id)
            .values(low_balance_alerted=True)
        )
        endpoint = await load_endpoint(connection, wallet.account_id)
        if endpoint is None or not endpoint.active or WALLET_EVENTS not in endpoint.events:
            return
        event_id = new_webhook_id()
        payload = low_balance_payload(
            event_id=event_id, account_id=wallet.account_id,
            balance=self._currency.format(wallet.balance),
            threshold=self._currency.format(threshold), currency=self._currency.code,
            occurred_at=now,
        )  # fmt: skip
        await add_delivery(
            connection, endpoint, event_type=LOW_BALANCE_EVENT, payload=payload, now=now,
            webhook_id=event_id,
        )  # fmt: skip
        after_commit(connection, self._wake)

    # -- status changes ---------------------------------------------------------------------

    async def on_status(
        self,
        connection: AsyncConnection,
        message: sa.Row[Any],
        status: MessageStatus,
        now: datetime,
        error_code: str | None,
    ) -> None:
        state = ChargeState(message.charge_state) if message.charge_state else None
        target = charge_transition(
            MessageStatus(message.status), status, state, refund_rejected=self._refund_rejected
        )
        sweep = status is MessageStatus.DELIVERED and message.verification_id is not None
        if target is None and not sweep:
            return
        pending = await self._pending_for(connection)
        if target is ChargeState.SETTLED:
            pending.settle.add(message.id)
        elif target is ChargeState.REFUNDED:
            pending.refund.add(message.id)
        if sweep:
            # the queue cancels the verification's later steps right after this call
            pending.sweep.add(message.verification_id)

    async def on_cancelled(
        self,
        connection: AsyncConnection,
        now: datetime,
        *,
        message_ids: Sequence[str] = (),
        campaign_id: str | None = None,
        reason: str = "cancelled",
    ) -> None:
        """Refund messages that were cancelled (or are about to be discarded) before a carrier
        had them: these ids, or every unsent message of a campaign. Call it in the
        transaction that cancels them, before deleting any."""
        pending = await self._pending_for(connection)
        for chunk in _chunks(list(message_ids)):
            pending.credits += await self._refund_rows(
                connection, sa.and_(m.id.in_(chunk), m.charge_state == ChargeState.HELD.value),
                reason,
            )  # fmt: skip
        if campaign_id is not None:
            pending.credits += await self._refund_campaign(connection, campaign_id, reason)

    async def _pending_for(self, connection: AsyncConnection) -> _Pending:
        pending = self._pending.get(connection)
        if pending is None:
            pending = self._pending[connection] = _Pending()
            await before_commit(connection, self._flush)
        return pending

    async def _flush(self, connection: AsyncConnection) -> None:
        pending = self._pending.pop(connection, None)
        if pending is None:
            return
        # Several changes of one message may share a transaction (a receipt batch): a refund
        # decided by a later one wins over a settlement decided by an earlier one.
        for chunk in _chunks(sorted(pending.settle - pending.refund)):
            await connection.execute(
                messages.update()
                .where(m.id.in_(chunk), m.charge_state == ChargeState.HELD.value)
                .values(charge_state=ChargeState.SETTLED.value)
            )
        credits = list(pending.credits)
        standing = [ChargeState.HELD.value, ChargeState.SETTLED.value]
        for chunk in _chunks(sorted(pending.refund)):
            credits += await self._refund_rows(
                connection, sa.and_(m.id.in_(chunk), m.charge_state.in_(standing)), None
            )
        if pending.sweep:
            credits += await self._refund_rows(
                connection,
                sa.and_(
                    m.verification_id.in_(sorted(pending.sweep)),
                    m.status == MessageStatus.CANCELLED.value,
                    m.charge_state == ChargeState.HELD.value,
                ),
                "not needed: an earlier step was delivered",
            )
        await self._credit(connection, credits)

    async def _refund_rows(
        self, connection: AsyncConnection, condition: sa.ColumnElement[bool], reason: str | None
    ) -> list[Movement]:
        rows = await connection.execute(
            messages.update()
            .where(condition)
            .values(charge_state=ChargeState.REFUNDED.value)
            .returning(
                m.id,
                m.account_id,
                m.channel,
                m.segments,
                m.charge,
                m.status,
                m.campaign_id,
                m.verification_id,
            )
        )
        return [
            Movement(
                kind=LedgerKind.REFUND, amount=int(row.charge or 0), message_id=row.id,
                campaign_id=row.campaign_id, verification_id=row.verification_id, messages=1,
                units=billable_units(Channel(row.channel), row.segments),
                reference=reason or row.status.lower(), channel=Channel(row.channel),
                account_id=row.account_id,
            )
            for row in rows
        ]  # fmt: skip

    async def _refund_campaign(
        self, connection: AsyncConnection, campaign_id: str, reason: str
    ) -> list[Movement]:
        """One refund per account and channel for a campaign's unsent messages, however many."""
        condition = sa.and_(
            m.campaign_id == campaign_id,
            m.charge_state == ChargeState.HELD.value,
            m.status.in_([MessageStatus.HELD.value, MessageStatus.CANCELLED.value]),
        )
        totals = (
            m.account_id, m.channel, sa.func.sum(m.charge).label("amount"),
            sa.func.count().label("messages"), sa.func.sum(_units_column()).label("units"),
        )  # fmt: skip
        if connection.dialect.name == "postgresql":
            # UPDATE … RETURNING inside a CTE: exactly the rows this statement changed
            changed = (
                messages.update()
                .where(condition)
                .values(charge_state=ChargeState.REFUNDED.value)
                .returning(m.account_id, m.channel, m.charge, m.segments)
                .cte("refunded")
            )
            units = sa.case((changed.c.channel == Channel.SMS.value, changed.c.segments), else_=1)
            rows = (
                await connection.execute(
                    sa.select(
                        changed.c.account_id, changed.c.channel,
                        sa.func.sum(changed.c.charge).label("amount"),
                        sa.func.count().label("messages"), sa.func.sum(units).label("units"),
                    ).group_by(changed.c.account_id, changed.c.channel)
                )
            ).all()  # fmt: skip
        else:  # one writer: the rows counted are the rows updated
            rows = (
                await connection.execute(
                    sa.select(*totals).where(condition).group_by(m.account_id, m.channel)
                )
            ).all()
            await connection.execute(
                messages.update().where(condition).values(charge_state=ChargeState.REFUNDED.value)
            )
        return [
            Movement(
                kind=LedgerKind.REFUND, amount=int(row.amount or 0), campaign_id=campaign_id,
                messages=int(row.messages), units=int(row.units or 0), reference=reason,
                channel=Channel(row.channel), account_id=row.account_id,
            )
            for row in rows
            if row.amount
        ]  # fmt: skip

    async def _credit(self, connection: AsyncConnection, credits: list[Movement]) -> None:
        if not credits:
            return
        now = self._clock.now()
        period = period_of(now)
        by_account: dict[str, list[Movement]] = {}
        for credit in credits:
            assert credit.account_id is not None
            by_account.setdefault(credit.account_id, []).append(credit)
        for account_id in sorted(by_account):  # one order everywhere: no lock cycles
            mine = by_account[account_id]
            wallet = await lock_wallet(connection, account_id, now)
            await move(connection, wallet, [x for x in mine if x.amount], now)
            for channel in {x.channel for x in mine if x.channel is not None}:
                units = sum(x.units for x in mine if x.channel is channel)
                await add_volume(connection, account_id, period, channel, -units)


def _with_segments(message: MessageRecord) -> MessageRecord:
    """An SMS whose encoding was not worked out yet (OTPs): count its segments now."""
    if message.channel is not Channel.SMS or message.encoding is not None:
        return message
    info = encoding.analyse(message.body)
    return replace(message, encoding=info.encoding.value, segments=info.segments)


def _charge_movements(priced: Sequence[MessageRecord], units: Sequence[int]) -> list[Movement]:
    """One entry per message; a campaign batch is one entry (a million rows stay cheap)."""
    if priced and priced[0].campaign_id is not None:
        total = sum(x.charge or 0 for x in priced)
        if not total:
            return []
        first = priced[0]
        return [
            Movement(
                kind=LedgerKind.CHARGE, amount=-total, campaign_id=first.campaign_id,
                messages=len(priced), units=sum(units), channel=first.channel,
            )
        ]  # fmt: skip
    return [
        Movement(
            kind=LedgerKind.CHARGE, amount=-(x.charge or 0), message_id=x.id,
            campaign_id=x.campaign_id, verification_id=x.verification_id, messages=1, units=n,
            channel=x.channel,
        )
        for x, n in zip(priced, units, strict=True)
        if x.charge
    ]  # fmt: skip


def _chunks(values: list[str], size: int = _CHUNK) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class SqlWalletStore:
    """Wallets and the ledger from the operator's and the customer's side."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def get_wallet(self, account_id: str) -> Wallet | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(sa.select(wallets).where(w.account_id == account_id))
            ).first()
        return _wallet(row) if row else None

    async def top_up(
        self,
        account_id: str,
        amount: int,
        now: datetime,
        *,
        reference: str | None = None,
        default_threshold: int | None = None,
    ) -> tuple[Wallet, LedgerEntry]:
        """Credit `amount`; a balance back at or above the low-balance threshold re-arms the
        alert. Raises NotFoundError for an unknown account."""
        async with self._db.write() as connection:
            await self._require_account(connection, account_id)
            wallet = await lock_wallet(connection, account_id, now)
            wallet = await move(
                connection, wallet,
                [Movement(kind=LedgerKind.TOPUP, amount=amount, reference=reference)], now,
            )  # fmt: skip
            threshold = (
                wallet.low_balance_threshold
                if wallet.low_balance_threshold is not None
                else default_threshold
            )
            if wallet.low_balance_alerted and (threshold is None or wallet.balance >= threshold):
                await connection.execute(
                    wallets.update()
                    .where(w.account_id == account_id)
                    .values(low_balance_alerted=False)
                )
                wallet = replace(wallet, low_balance_alerted=False)
            entry = (
                await connection.execute(
                    sa.select(ledger_entries)
                    .where(e.account_id == account_id)
                    .order_by(e.id.desc())
                    .limit(1)
                )
            ).one()
        return wallet, _entry(entry)

    async def configure(self, account_id: str, now: datetime, **changes: int | None) -> Wallet:
        """Set `credit_limit` and/or `low_balance_threshold` (None: the platform default)."""
        unknown = set(changes) - {"credit_limit", "low_balance_threshold"}
        if unknown:
            raise ValueError(f"unknown wallet fields: {sorted(unknown)}")
        async with self._db.write() as connection:
            await self._require_account(connection, account_id)
            await lock_wallet(connection, account_id, now)
            values: dict[str, Any] = {**changes, "updated_at": now}
            if "low_balance_threshold" in changes:
                values["low_balance_alerted"] = False  # a new threshold alerts afresh
            row = (
                await connection.execute(
                    wallets.update()
                    .where(w.account_id == account_id)
                    .values(**values)
                    .returning(*wallets.c)
                )
            ).one()
        return _wallet(row)

    async def ledger(
        self, account_id: str, *, before_id: int | None = None, limit: int = 50
    ) -> list[LedgerEntry]:
        """Newest first; `before_id` pages back."""
        query = sa.select(ledger_entries).where(e.account_id == account_id)
        if before_id is not None:
            query = query.where(e.id < before_id)
        async with self._db.read() as connection:
            rows = await connection.execute(query.order_by(e.id.desc()).limit(limit))
            return [_entry(row) for row in rows]

    async def held(self, account_id: str) -> int:
        """Charges of messages no carrier has yet (refunded if they never reach one)."""
        async with self._db.read() as connection:
            total = await connection.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(m.charge), 0)).where(
                    m.status.in_(_UNSENT),
                    m.account_id == account_id,
                    m.charge_state == ChargeState.HELD.value,
                )
            )
        return int(total or 0)

    async def ledger_sum(self, account_id: str) -> int:
        async with self._db.read() as connection:
            total = await connection.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(e.amount), 0)).where(
                    e.account_id == account_id
                )
            )
        return int(total or 0)

    async def ledger_totals(
        self, account_id: str, start: datetime, end: datetime
    ) -> dict[LedgerKind, tuple[int, int]]:
        """Per kind, (sum of amounts, messages covered) of entries made in [start, end)."""
        async with self._db.read() as connection:
            rows = await connection.execute(
                sa.select(e.kind, sa.func.sum(e.amount), sa.func.sum(e.messages))
                .where(e.account_id == account_id, e.created_at >= start, e.created_at < end)
                .group_by(e.kind)
            )
            return {LedgerKind(kind): (int(total), int(count)) for kind, total, count in rows}

    async def _require_account(self, connection: AsyncConnection, account_id: str) -> None:
        found = await connection.scalar(sa.select(accounts.c.id).where(accounts.c.id == account_id))
        if found is None:
            raise NotFoundError(f"no customer {account_id}")
