"""PostgreSQL transaction-scoped advisory locks on names (a number, a provider id)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

# In key order, in one statement: two transactions locking overlapping sets never wait for
# each other in a circle.
_LOCK_KEYS = sa.text(
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT unnest(CAST(:keys AS bigint[])) AS k"
    " ORDER BY 1) AS ordered"
)


def advisory_key(*parts: str) -> int:
    """A signed 64-bit key for a name made of `parts`."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def lock_names(connection: AsyncConnection, keys: Iterable[int]) -> None:
    """Hold the advisory locks of `keys` until the transaction ends (PostgreSQL only)."""
    ordered = sorted(set(keys))
    if ordered:
        await connection.execute(_LOCK_KEYS, {"keys": ordered})


def leased_first(key: sa.ColumnElement[Any], due: sa.Select[Any]) -> sa.ColumnElement[bool]:
    """`key` is among the rows `due` picks, locked once, for `UPDATE … WHERE` (PostgreSQL).

    `WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` may update more than n rows: when
    the planner rescans the sub-select (a nested-loop semi-join), each rescan skips the rows the
    previous one locked and picks others. A plan change (row-level security's policy, ADR 0020)
    made one claim lease 100 rows instead of 6. A MATERIALIZED CTE runs exactly once.
    """
    chosen = due.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED")
    picked: sa.ColumnElement[Any] = chosen.c[key.name]
    return key == picked
