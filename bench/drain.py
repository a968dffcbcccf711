"""A bulk drain in-process, without HTTP: the worker's CPU time per message, and where it goes.

    python -m bench.drain --db sqlite|postgres [--count 20000] [--profile] [--src DIR]

Stages `count` promotional SMS straight into the queue (no upload), starts the dispatcher with
one SMPP connector (window 100) to the bench SMSC peer (`bench/smsc.py`, a child process) and
waits until every receipt is acknowledged. Prints msg/s, this process's and the peer's CPU time
per message, what an OTP would meet meanwhile (the loop's lag, the wait for a write
transaction), and with `--profile` a pyinstrument tree of the drain.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.deployment import PASSWORD, BenchDatabase, SmscProcess
from bench.figures import percentile
from bench.loop import run_loop
from bench.processes import cpu_seconds
from switchboard.bootstrap import build_container
from switchboard.config import load_settings
from switchboard.domain.messages import Channel, MessageRecord, MessageStatus, MessageType

TEXT = "Hello Asha, your statement of 1,234.50 is ready (due 2026-12-01)."


def _messages(account_id: str, count: int, start: int) -> list[MessageRecord]:
    now = datetime.now(UTC)
    return [
        MessageRecord(
            id=str(uuid.uuid4()),
            numeric_id=secrets.randbits(62),
            transaction_id="bench",
            account_id=account_id,
            channel=Channel.SMS,
            message_type=MessageType.PROMOTIONAL,
            status=MessageStatus.QUEUED,
            destination=f"+9198{start + index:08d}",
            country_code="91",
            sender="BENCH",
            body=TEXT,
            encoding="GSM7",
            campaign_id="bench",
            not_before=now,
            created_at=now,
        )
        for index in range(count)
    ]


async def measure(db: str, count: int, profile: bool, smsc: SmscProcess) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-drain-"))
    database = BenchDatabase(db, workdir)
    database.create()
    try:
        overrides: dict[str, Any] = {
            "database_url": database.url,
            "token_signing_key": secrets.token_hex(64),
            "otp_pepper": secrets.token_hex(64),
            "connectors": [
                {"name": "smsc", "type": "smpp", "host": "127.0.0.1", "port": smsc.port,
                 "system_id": "bench", "password": "bench", "window": 100,
                 "tps": 1_000_000.0, "binds": 1, "reconnect_initial_s": 0.5}
            ],
            "routes": [{"channel": "SMS", "connectors": ["smsc"]}],
        }  # fmt: skip
        if db == "postgres":
            from switchboard.storage.sql import migrate

            migrate.upgrade(database.url)
        container = build_container(load_settings(None, **overrides))
        await container.start(run_workers=False)
        try:
            await container.accounts.create_customer(
                email="bench@example.com", password=PASSWORD, customer_id="C-BENCH", name="B"
            )
            for start in range(0, count, 5000):
                batch = _messages("C-BENCH", min(5000, count - start), start)
                async with container.database.write() as connection:
                    await container.queue.enqueue(connection, batch)
            acked_before = smsc.latest.get("receipts_acked", 0)
            profiler: Any = None
            if profile:
                from pyinstrument import Profiler

                profiler = Profiler(async_mode="disabled", interval=0.0005)
                profiler.start()
            began, cpu0, peer0 = time.perf_counter(), time.process_time(), smsc_cpu(smsc)
            await container.start_workers()
            lags: list[float] = []
            writes: list[float] = []
            while smsc.latest.get("receipts_acked", 0) - acked_before < count:
                # What an OTP request meets in the loop: the delay of a 20 ms sleep (other work
                # running first), then the wait for a write transaction (the SQLite writer).
                asked = time.perf_counter()
                await asyncio.sleep(0.02)
                woke = time.perf_counter()
                lags.append(woke - asked - 0.02)
                async with container.database.write():
                    pass
                writes.append(time.perf_counter() - woke)
                if woke - began > 300:
                    print("timed out")
                    break
            elapsed = time.perf_counter() - began
            cpu, peer = time.process_time() - cpu0, smsc_cpu(smsc) - peer0
            if profiler is not None:
                profiler.stop()
            print(
                f"drain {db}: {count:,} msgs in {elapsed:.2f} s = {count / elapsed:,.0f} msg/s | "
                f"worker cpu {cpu / count * 1e6:.0f} µs/msg ({cpu / elapsed * 100:.0f} %) | "
                f"peer cpu {peer / count * 1e6:.0f} µs/msg | loop lag p50 {_ms(lags, 50)} "
                f"p99 {_ms(lags, 99)} | empty write p50 {_ms(writes, 50)} p99 {_ms(writes, 99)}"
            )
            if profiler is not None:
                print(profiler.output_text(unicode=True, show_all=False))
        finally:
            await container.stop()
    finally:
        database.drop()
        shutil.rmtree(workdir, ignore_errors=True)


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f} ms" if values else "-"


def smsc_cpu(smsc: SmscProcess) -> float:
    return cpu_seconds(smsc.process.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    arguments = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-drain-smsc-"))
    smsc = SmscProcess(workdir)
    try:
        run_loop(measure(arguments.db, arguments.count, arguments.profile, smsc))
    finally:
        smsc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
