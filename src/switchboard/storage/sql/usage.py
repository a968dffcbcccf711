"""Usage reports from the messages table: counts, segments, deliveries and cost per group."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from switchboard.domain.messages import MessageStatus
from switchboard.domain.wallet import ChargeState, UsageRow
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import messages

m = messages.c
GROUPS = ("day", "channel", "country", "messageType")


class SqlUsageReports:
    def __init__(self, database: Database) -> None:
        self._db = database

    def _group(self, group_by: str) -> sa.ColumnElement[Any]:
        if group_by == "channel":
            return m.channel
        if group_by == "country":
            return m.country_code
        if group_by == "messageType":
            return m.message_type
        if group_by != "day":
            raise ValueError(f"group_by must be one of {GROUPS}")
        if self._db.is_sqlite:  # stored as 'YYYY-MM-DD HH:MM:SS…' in UTC
            return sa.func.substr(m.created_at, 1, 10, type_=sa.String)
        return sa.func.to_char(sa.func.timezone("UTC", m.created_at), "YYYY-MM-DD", type_=sa.String)

    async def usage(
        self, account_id: str, start: datetime, end: datetime, group_by: str
    ) -> list[UsageRow]:
        """Messages accepted in [start, end), grouped; ordered by the group's key."""
        key = self._group(group_by).label("key")
        standing = m.charge_state.in_([ChargeState.HELD.value, ChargeState.SETTLED.value])
        query = (
            sa.select(
                key,
                sa.func.count().label("messages"),
                sa.func.coalesce(sa.func.sum(m.segments), 0).label("segments"),
                sa.func.sum(sa.case((m.status == MessageStatus.DELIVERED.value, 1), else_=0)).label(
                    "delivered"
                ),
                sa.func.sum(sa.case((standing, m.charge), else_=0)).label("cost"),
                sa.func.sum(
                    sa.case((m.charge_state == ChargeState.REFUNDED.value, m.charge), else_=0)
                ).label("refunded"),
            )
            .where(m.account_id == account_id, m.created_at >= start, m.created_at < end)
            .group_by(key)
            .order_by(key)
        )
        async with self._db.read() as connection:
            rows = (await connection.execute(query)).all()
        return [
            UsageRow(
                key=str(row.key or ""),
                messages=int(row.messages),
                segments=int(row.segments or 0),
                delivered=int(row.delivered or 0),
                cost=int(row.cost or 0),
                refunded=int(row.refunded or 0),
            )
            for row in rows
        ]
