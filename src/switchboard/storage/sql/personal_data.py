"""A person's data across the core tables: exported on request, erased in place (GDPR)."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import (
    messages,
    sandbox_outbox,
    verifications,
    webhook_deliveries,
)

REDACTED = "[redacted]"
# the callback bodies' fields that carry the person's number, address or text
_PERSONAL_KEYS = frozenset({"mobile", "mobileNumber", "destination", "email", "text", "message"})


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (None if k in _PERSONAL_KEYS else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    return value


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class SqlPersonalData:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def export_recipient(
        self, account_id: str, destinations: Collection[str]
    ) -> dict[str, list[dict[str, Any]]]:
        wanted = list(destinations)
        m, v = messages.c, verifications.c
        async with self._db.read() as connection:
            sent = (
                await connection.execute(
                    sa.select(m.id, m.numeric_id, m.channel, m.message_type, m.status,
                              m.destination, m.sender, m.body, m.subject, m.created_at,
                              m.submitted_at, m.done_at)
                    .where(m.account_id == account_id, m.destination.in_(wanted))
                    .order_by(m.created_at, m.id)
                )
            ).all()  # fmt: skip
            checks = (
                await connection.execute(
                    sa.select(v.id, v.channel, v.destination, v.status, v.created_at, v.ended_at)
                    .where(v.account_id == account_id, v.destination.in_(wanted))
                    .order_by(v.created_at, v.id)
                )
            ).all()
        return {
            "messages": [
                {
                    "id": row.id, "verificationId": str(row.numeric_id), "channel": row.channel,
                    "messageType": row.message_type, "status": row.status,
                    "destination": row.destination, "sender": row.sender,
                    # an OTP's stored text is already redacted once sent (the code never leaves)
                    "text": row.body, "subject": row.subject,
                    "createdAt": _when(row.created_at), "submittedAt": _when(row.submitted_at),
                    "doneAt": _when(row.done_at),
                }
                for row in sent
            ],
            "verifications": [
                {
                    "verificationId": str(row.id), "channel": row.channel,
                    "destination": row.destination, "status": row.status,
                    "createdAt": _when(row.created_at), "endedAt": _when(row.ended_at),
                }
                for row in checks
            ],
        }  # fmt: skip

    async def erase_recipient(
        self, account_id: str, destinations: Collection[str], now: datetime
    ) -> int:
        wanted = list(destinations)
        if not wanted:
            return 0
        m, v, o, w = messages.c, verifications.c, sandbox_outbox.c, webhook_deliveries.c
        async with self._db.write() as connection:
            message_ids = (
                (
                    await connection.execute(
                        sa.select(m.id).where(m.account_id == account_id, m.destination.in_(wanted))
                    )
                )
                .scalars()
                .all()
            )
            verification_ids = (
                (
                    await connection.execute(
                        sa.select(v.id).where(v.account_id == account_id, v.destination.in_(wanted))
                    )
                )
                .scalars()
                .all()
            )
            if message_ids:
                await connection.execute(
                    messages.update()
                    .where(m.id.in_(message_ids))
                    .values(destination=REDACTED, body=REDACTED, otp_code=None, subject=None,
                            html=None, client_ref=None, updated_at=now)
                )  # fmt: skip
            if verification_ids:
                await connection.execute(
                    verifications.update()
                    .where(v.id.in_(verification_ids))
                    .values(destination=REDACTED, mobile_number=REDACTED)
                )
            await connection.execute(
                sandbox_outbox.update()
                .where(o.account_id == account_id, o.destination.in_(wanted))
                .values(destination=REDACTED, text=REDACTED)
            )
            if message_ids or verification_ids:
                deliveries = (
                    await connection.execute(
                        sa.select(w.id, w.payload).where(
                            w.account_id == account_id,
                            sa.or_(w.message_id.in_(message_ids),
                                   w.verification_id.in_(verification_ids)),
                        )
                    )
                ).all()  # fmt: skip
                for delivery in deliveries:
                    try:
                        payload = json.dumps(_redact(json.loads(delivery.payload)))
                    except ValueError:
                        payload = "{}"
                    await connection.execute(
                        webhook_deliveries.update()
                        .where(w.id == delivery.id)
                        .values(payload=payload)
                    )
        return len(message_ids) + len(verification_ids)
