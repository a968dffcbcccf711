"""SQL persistence of the fraud guard: its records, the safe lists and the shared counters."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from switchboard.fraud.store import (
    WRITES,
    BlockQuery,
    Bucket,
    FraudBlock,
    sends_counter_of,
)
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import fraud_blocks, fraud_counters, fraud_safe_list

_b = fraud_blocks.c
_c = fraud_counters.c
_COLUMNS = tuple(c.name for c in fraud_blocks.columns)
_ACTIVE = sa.select(fraud_blocks).where(_b.action == "blocked", _b.until > sa.bindparam("p_now"))
_ADD_HIT = (
    fraud_blocks.update()
    .where(_b.id == sa.bindparam("p_id"))
    .values(
        hits=_b.hits + sa.bindparam("p_hits"),
        last_hit_at=sa.func.coalesce(
            sa.bindparam("p_at", type_=_b.last_hit_at.type), _b.last_hit_at
        ),
    )
)
_PRUNE = fraud_counters.delete().where(_c.minute < sa.bindparam("p_before"), _c.name != WRITES)

# The counters' statements go to the driver as written: a sync moves a few rows per send, and
# SQLAlchemy's per-row parameter processing cost more than the statements (bench/fraud.py).
# One statement for the whole sync, answering each bucket's total after it (every process's
# counts so far): the rows come as one JSON array on SQLite, as arrays on PostgreSQL (in the
# order given: the lock order). `WHERE true` keeps SQLite from reading ON as a join's.
# A counter's verifications ('pv:…') share its sends' row ('p:…'): one row per range and
# minute, not two (0018).
_SQLITE_UPSERT = (
    "INSERT INTO fraud_counters (account_id, name, minute, count, verified) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
    "json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]') "
    "FROM json_each(?) WHERE true "
    "ON CONFLICT (account_id, name, minute) DO UPDATE SET count = count + excluded.count, "
    "verified = verified + excluded.verified "
    "RETURNING account_id, name, minute, count, verified"
)
_POSTGRES_UPSERT = (
    "INSERT INTO fraud_counters (account_id, name, minute, count, verified) "
    "SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::int[], %s::int[], %s::int[]) "
    "ON CONFLICT (account_id, name, minute) "
    "DO UPDATE SET count = fraud_counters.count + excluded.count, "
    "verified = fraud_counters.verified + excluded.verified "
    "RETURNING account_id, name, minute, count, verified"
)
_SQLITE_READ = (
    "SELECT name, minute, count, verified FROM fraud_counters WHERE account_id = ? "
    "AND name IN (SELECT value FROM json_each(?)) AND minute >= ?"
)
_POSTGRES_READ = (
    "SELECT name, minute, count, verified FROM fraud_counters WHERE account_id = %s "
    "AND name = ANY(%s::varchar[]) AND minute >= %s"
)


def _block(row: sa.Row[Any]) -> FraudBlock:
    values = row._mapping
    return FraudBlock(**{name: values[name] for name in _COLUMNS})


class SqlFraudStore:
    """Blocks, hits, holds and counters are the guard's state for every account at once, synced
    from whichever request comes by: those transactions see every account's rows (ADR 0020);
    a customer's own list of blocks and safe list stay in its scope."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def add_blocks(self, blocks: Sequence[FraudBlock]) -> None:
        if not blocks:
            return
        async with self._db.write(every_account=True) as connection:
            await connection.execute(
                fraud_blocks.insert(),
                [{name: getattr(block, name) for name in _COLUMNS} for block in blocks],
            )

    async def add_hits(self, hits: Mapping[str, tuple[int, datetime]]) -> None:
        async with self._db.write(every_account=True) as connection:
            await connection.execute(
                _ADD_HIT,
                [{"p_id": i, "p_hits": n, "p_at": at} for i, (n, at) in sorted(hits.items())],
            )

    async def active_holds(self, now: datetime) -> list[FraudBlock]:
        async with self._db.read(every_account=True) as connection:
            rows = (await connection.execute(_ACTIVE, {"p_now": now})).all()
        return [_block(row) for row in rows]

    async def list_blocks(self, account_id: str, query: BlockQuery) -> list[FraudBlock]:
        statement = sa.select(fraud_blocks).where(_b.account_id == account_id)
        if query.rule is not None:
            statement = statement.where(_b.rule == query.rule)
        if query.action is not None:
            statement = statement.where(_b.action == query.action)
        if query.since is not None:
            statement = statement.where(_b.created_at >= query.since)
        if query.verification_id is not None:
            statement = statement.where(_b.verification_id == query.verification_id)
        if query.prefix is not None:
            # a subject shows its wildcard digits as 'x' (+91987650xxx)
            like = query.prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = statement.where(
                sa.or_(
                    _b.destination.like(f"{like}%", escape="\\"),
                    _b.subject.like(f"{like}%", escape="\\"),
                )
            )
        statement = statement.order_by(_b.created_at.desc(), _b.id.desc()).limit(query.limit)
        async with self._db.read() as connection:
            rows = (await connection.execute(statement)).all()
        return [_block(row) for row in rows]

    async def safe_list(self, account_id: str) -> list[str]:
        async with self._db.read() as connection:
            rows = await connection.execute(
                sa.select(fraud_safe_list.c.entry)
                .where(fraud_safe_list.c.account_id == account_id)
                .order_by(fraud_safe_list.c.entry)
            )
            return list(rows.scalars())

    async def replace_safe_list(
        self, account_id: str, entries: Sequence[str], now: datetime
    ) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                fraud_safe_list.delete().where(fraud_safe_list.c.account_id == account_id)
            )
            if entries:
                await connection.execute(
                    fraud_safe_list.insert(),
                    [{"account_id": account_id, "entry": e, "created_at": now} for e in entries],
                )


class SqlCounterStore:
    """The guard's counters in `fraud_counters`, one row per account, counter and minute."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._sqlite = database.is_sqlite

    async def add(self, increments: Mapping[Bucket, int]) -> dict[Bucket, int]:
        if not increments:
            return {}
        merged: dict[Bucket, list[int]] = {}  # (account, sends counter, minute) → [sends, verified]
        asked: dict[Bucket, list[tuple[str, bool]]] = {}  # the same → the names given, verified?
        for (account_id, name, minute), count in increments.items():
            row_name, is_verified = sends_counter_of(name)
            key = (account_id, row_name, minute)
            row = merged.get(key)
            if row is None:
                row = merged[key] = [0, 0]
            row[1 if is_verified else 0] += count
            asked.setdefault(key, []).append((name, is_verified))
        # sorted: two processes upserting the same rows lock them in one order (PostgreSQL)
        rows = sorted((a, n, m, row[0], row[1]) for (a, n, m), row in merged.items())
        async with self._db.write(every_account=True) as connection:
            if self._sqlite:
                result = await connection.exec_driver_sql(_SQLITE_UPSERT, (json.dumps(rows),))
            else:
                columns = tuple(map(list, zip(*rows, strict=True)))
                result = await connection.exec_driver_sql(_POSTGRES_UPSERT, columns)
            stored: Sequence[Any] = result.all()
        totals: dict[Bucket, int] = {}
        for account_id, row_name, minute, sends, verified in stored:
            for name, is_verified in asked[(account_id, row_name, minute)]:
                totals[(account_id, name, minute)] = verified if is_verified else sends
        return totals

    async def read(
        self, account_id: str, names: Sequence[str], since_minute: int
    ) -> dict[str, dict[int, int]]:
        found: dict[str, dict[int, int]] = {}
        asked: dict[str, list[tuple[str, bool]]] = {}  # sends counter → the names, verified?
        for name in names:
            row_name, is_verified = sends_counter_of(name)
            asked.setdefault(row_name, []).append((name, is_verified))
        wanted: str | list[str]
        if self._sqlite:
            statement, wanted = _SQLITE_READ, json.dumps(list(asked))
        else:
            statement, wanted = _POSTGRES_READ, list(asked)
        async with self._db.read(every_account=True) as connection:
            result = await connection.exec_driver_sql(statement, (account_id, wanted, since_minute))
            read: Sequence[Any] = result.all()
        for row_name, minute, sends, verified in read:
            for name, is_verified in asked[row_name]:
                value = verified if is_verified else sends
                if value:
                    found.setdefault(name, {})[minute] = value
        return found

    async def prune(self, before_minute: int) -> None:
        async with self._db.write(every_account=True) as connection:
            await connection.execute(_PRUNE, {"p_before": before_minute})

    async def close(self) -> None:
        return None  # the database is the container's to close
