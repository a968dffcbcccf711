"""Row ⇄ domain value conversions shared by the SQL stores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from switchboard.domain.messages import Channel, MessageRecord, MessageStatus, MessageType
from switchboard.domain.verification import VerificationRecord, VerificationStatus
from switchboard.storage.sql.tables import messages

_MESSAGE_FIELDS = tuple(MessageRecord.__dataclass_fields__)
_STORED_FIELDS = tuple(name for name in _MESSAGE_FIELDS if name in messages.c)
# The columns of `message_values`, in its order: the stored fields, then lane and updated_at.
MESSAGE_COLUMNS: tuple[str, ...] = (*_STORED_FIELDS, "lane", "updated_at")
_stored_fields = attrgetter(*_STORED_FIELDS)
_ENUM_POSITIONS = tuple(_STORED_FIELDS.index(n) for n in ("channel", "message_type", "status"))
_ENUM_VALUES: dict[Any, str] = {
    member: member.value for kind in (Channel, MessageType, MessageStatus) for member in kind
}
_Processor = Callable[[Any], Any]
_processors: dict[str, tuple[tuple[int, _Processor], ...]] = {}


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


def message_rows(batch: Sequence[MessageRecord], dialect: Dialect) -> list[tuple[Any, ...]]:
    """`message_values` of each message as a row of MESSAGE_COLUMNS, with the values the
    dialect's bind processors make of them: what SQLAlchemy would hand the driver.

    For bulk inserts at the driver (executemany, COPY) without SQLAlchemy's per-row work. A
    campaign's rows share most values (one `not_before`, timestamps per batch), so each
    processed value is computed once per batch.
    """
    processors = _processors.get(dialect.name)
    if processors is None:
        processors = _processors[dialect.name] = _bind_processors(dialect)
    memo: list[dict[Any, Any]] = [{} for _ in processors]
    lanes: dict[tuple[MessageType, bool], int] = {}
    rows: list[tuple[Any, ...]] = []
    for message in batch:
        row = list(_stored_fields(message))
        for position in _ENUM_POSITIONS:
            row[position] = _ENUM_VALUES[row[position]]
        kind = (message.message_type, message.campaign_id is None)
        lane = lanes.get(kind)
        if lane is None:
            lane = lanes[kind] = int(message.lane)  # depends on these two only
        row.append(lane)
        row.append(message.created_at)
        for (position, process), seen in zip(processors, memo, strict=True):
            value = row[position]
            if value is not None:
                processed = seen.get(value)
                if processed is None:
                    processed = seen[value] = process(value)
                row[position] = processed
        rows.append(tuple(row))
    return rows


def _bind_processors(dialect: Dialect) -> tuple[tuple[int, _Processor], ...]:
    found = []
    for position, name in enumerate(MESSAGE_COLUMNS):
        process = messages.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            found.append((position, process))
    return tuple(found)


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
