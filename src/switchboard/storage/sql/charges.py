"""The seam through which the stores that queue and cancel messages let billing charge them.

The stores call it inside their own transactions, so a charge commits or rolls back with the
messages it pays for. The base class charges nothing (billing off); `wallets.SqlCharges` is
the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.domain.messages import MessageRecord


class MessageCharges:
    async def on_accept(
        self, connection: AsyncConnection, batch: Sequence[MessageRecord]
    ) -> Sequence[MessageRecord]:
        """Called before `batch` is inserted; returns the messages to insert (with their
        charge). May raise a SwitchboardError to refuse them all (e.g. insufficient funds)."""
        return batch

    async def on_cancelled(
        self,
        connection: AsyncConnection,
        now: datetime,
        *,
        message_ids: Sequence[str] = (),
        campaign_id: str | None = None,
        reason: str = "cancelled",
    ) -> None:
        """Called after messages were cancelled in bulk before any carrier had them (these
        ids, or a campaign's unsent messages), or before a staged campaign's are deleted."""
