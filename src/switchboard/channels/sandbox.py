"""The built-in sandbox carrier: accepts every channel, keeps what it "sent", scripts outcomes.

It is the default on a fresh install and in tests, and it is where sandbox test numbers always
go, so they never reach a real carrier. Its outbox holds the text it was given, codes included:
that is the point of a sandbox, and nothing sent through a real connector ends up there.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from switchboard.channels.base import (
    DeliveryReport,
    OutboundMessage,
    ReportSink,
    ReportState,
    SendError,
    SendErrorKind,
    SendResult,
)
from switchboard.domain.encoding import analyse
from switchboard.domain.messages import Channel

Outcome = Literal["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "SILENT", "PERMANENT", "TRANSIENT"]


class SandboxOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Outcome = "DELIVRD"
    delivery_delay_s: float = Field(default=0.0, ge=0, le=3600)
    channels: list[Channel] = Field(default_factory=lambda: list(Channel))


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    account_id: str
    message_id: str
    channel: Channel
    destination: str
    sender: str | None
    text: str
    sent_at: datetime


class Outbox(Protocol):
    async def record(self, entry: OutboxEntry) -> None:
        """Keep one sent message for developers to read back."""
        ...


class SandboxDriver:
    def __init__(self, name: str, options: SandboxOptions, outbox: Outbox) -> None:
        self.name = name
        self.channels = frozenset(options.channels)
        self.options = options
        self._outbox = outbox
        self._sink: ReportSink | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self, sink: ReportSink) -> None:
        self._sink = sink
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        self._pending.clear()

    def is_available(self) -> bool:
        return not self._closed

    async def send(self, message: OutboundMessage) -> SendResult:
        outcome = self.options.outcome
        if outcome == "TRANSIENT":
            raise SendError(SendErrorKind.TRANSIENT, "sandbox scripted: temporarily unavailable")
        if outcome == "PERMANENT":
            raise SendError(
                SendErrorKind.PERMANENT,
                "sandbox scripted: refused",
                provider_code="sandbox-refused",
            )
        provider_id = "sbx-" + secrets.token_hex(12)
        submitted = datetime.now(UTC)
        await self._outbox.record(
            OutboxEntry(
                account_id=message.account_id,
                message_id=message.id,
                channel=message.channel,
                destination=message.destination,
                sender=message.sender,
                text=message.text,
                sent_at=submitted,
            )
        )
        if outcome != "SILENT":
            task = asyncio.create_task(self._report(provider_id, ReportState(outcome), submitted))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        segments = analyse(message.text).segments if message.channel is Channel.SMS else 1
        return SendResult(provider_ids=(provider_id,), segments=segments)

    async def _report(self, provider_id: str, state: ReportState, submitted: datetime) -> None:
        if self.options.delivery_delay_s:
            await asyncio.sleep(self.options.delivery_delay_s)
        else:
            await asyncio.sleep(0)  # let the submit be recorded first, as a real carrier would
        if self._sink is None:
            return
        await self._sink.on_report(
            DeliveryReport(
                connector=self.name,
                provider_id=provider_id,
                state=state,
                error_code=None if state is ReportState.DELIVRD else "sandbox",
                submitted_at=submitted,
                done_at=datetime.now(UTC),
            )
        )
