"""Row ⇄ domain value conversions shared by the SQL stores."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from switchboard.domain.messages import Channel, MessageRecord, MessageStatus, MessageType
from switchboard.domain.verification import VerificationRecord, VerificationStatus
from switchboard.storage.sql.tables import messages

_MESSAGE_FIELDS = tuple(MessageRecord.__dataclass_fields__)


def message_record(row: sa.Row[Any]) -> MessageRecord:
    values = dict(row._mapping)
    fields = {name: values[name] for name in _MESSAGE_FIELDS if name in values}
    fields["channel"] = Channel(values["channel"])
    fields["message_type"] = MessageType(values["message_type"])
    fields["status"] = MessageStatus(values["status"])
    return MessageRecord(**fields)


def message_values(message: MessageRecord) -> dict[str, Any]:
    values = {name: getattr(message, name) for name in _MESSAGE_FIELDS}
    values["channel"] = message.channel.value
    values["message_type"] = message.message_type.value
    values["status"] = message.status.value
    values["lane"] = int(message.lane)
    values["updated_at"] = message.created_at
    return {name: value for name, value in values.items() if name in messages.c}


def verification_record(row: sa.Row[Any]) -> VerificationRecord:
    values = row._mapping
    return VerificationRecord(
        id=values["id"],
        account_id=values["account_id"],
        transaction_id=values["transaction_id"],
        channel=Channel(values["channel"]),
        country_code=values["country_code"],
        mobile_number=values["mobile_number"],
        destination=values["destination"],
        code_hash=values["code_hash"],
        status=VerificationStatus(values["status"]),
        attempts=values["attempts"],
        max_attempts=values["max_attempts"],
        timeout_s=values["timeout_s"],
        created_at=values["created_at"],
        expires_at=values["expires_at"],
        ended_at=values["ended_at"],
        fallback=tuple(Channel(c) for c in values["fallback"]),
        is_test=values["is_test"],
    )
