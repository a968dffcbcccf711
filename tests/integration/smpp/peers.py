"""Test-side handles: the npm SMSC peer process, a recording sink, and message builders."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from switchboard.channels.base import DeliveryReport, InboundMessage, OutboundMessage
from switchboard.channels.smpp.driver import SmppDriver, SmppOptions
from switchboard.domain.messages import Channel, MessageType

NPM_SYSTEM_ID = "esme1"
NPM_PASSWORD = "pw"
SIM_SYSTEM_ID = "switchboard"
SIM_PASSWORD = "secret"


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    """Poll `predicate` every 10 ms; bounded in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@dataclass
class NpmSmsc:
    """A running `node server.js` on 127.0.0.1 and the JSON lines it logged."""

    process: subprocess.Popen[str]
    port: int
    log_path: Path
    system_id: str = NPM_SYSTEM_ID
    password: str = NPM_PASSWORD

    def records(self, command: str | None = "submit_sm") -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        return [e for e in entries if command is None or e.get("command") == command]

    async def wait_records(
        self, count: int, command: str = "submit_sm", timeout_s: float = 3.0
    ) -> list[dict[str, Any]]:
        await wait_until(lambda: len(self.records(command)) >= count, timeout_s)
        return self.records(command)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass
class RecordingSink:
    """A ReportSink that keeps what it was given; `failures` makes the next calls raise,
    `store_s` makes storing a report take that long."""

    reports: list[DeliveryReport] = field(default_factory=list)
    inbound: list[InboundMessage] = field(default_factory=list)
    failures: int = 0
    store_s: float = 0.0

    async def on_report(self, report: DeliveryReport) -> None:
        self._maybe_fail()
        if self.store_s:
            await asyncio.sleep(self.store_s)
        self.reports.append(report)

    async def on_inbound(self, message: InboundMessage) -> None:
        self._maybe_fail()
        self.inbound.append(message)

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("storage is down")


def fast_options(port: int, **overrides: Any) -> SmppOptions:
    """Options with timers scaled down to fractions of a second."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "system_id": SIM_SYSTEM_ID,
        "password": SIM_PASSWORD,
        "enquire_link_s": 5.0,
        "response_timeout_s": 1.0,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.2,
        "throttle_pause_s": 0.02,
        "throttle_pause_max_s": 0.1,
        "close_grace_s": 1.0,
        "tps": 1000.0,
    }
    values.update(overrides)
    return SmppOptions(**values)


def sms(
    text: str,
    *,
    destination: str = "+919876543210",
    sender: str | None = "BRAND",
    expires_at: datetime | None = None,
    message_id: str = "m1",
    dlt: bool = False,
) -> OutboundMessage:
    return OutboundMessage(
        id=message_id,
        account_id="acc1",
        channel=Channel.SMS,
        message_type=MessageType.OTP,
        destination=destination,
        sender=sender,
        text=text,
        expires_at=expires_at,
        dlt_entity_id="1201159100000000001" if dlt else None,
        dlt_template_id="1107160016156755389" if dlt else None,
    )


@contextlib.asynccontextmanager
async def running_driver(
    options: SmppOptions, sink: RecordingSink, *, bound: bool = True, name: str = "smsc"
) -> AsyncIterator[SmppDriver]:
    """A started SmppDriver (bound unless `bound=False`), always closed afterwards."""
    driver = SmppDriver(name, options, rng=random.Random(1))
    await driver.start(sink)
    try:
        if bound:
            assert await driver.wait_available(3.0), driver.status()
        yield driver
    finally:
        await driver.close()
