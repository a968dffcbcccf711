"""The fraud guard's CPU per OTP send, in-process, against the send's own CPU.

    python -m bench.fraud --db sqlite|postgres [--count 3000] [--quick]

Three sequential loops over distinct numbers spread over 1,000 prefixes (≤ 5 numbers per
prefix, so no rule trips): the guard alone (`admit` around nothing), and `verification.start`
with the guard on and with it off. Each send is also counted as verified (a healthy account:
without it the conversion monitor rightly pauses the country after two minutes). CPU is this
process's `time.process_time()`; the guard's share is (on - off) / on, and also guard-alone /
on. A first pass over the prefixes warms the
guard's copy of the counters (each new prefix costs one read of its history).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.deployment import PASSWORD, BenchDatabase
from switchboard.bootstrap import Container, build_container
from switchboard.config import load_settings
from switchboard.services.verification import SendRequest

PREFIXES = 1000


@contextlib.asynccontextmanager
async def _container(db: str, fraud_on: bool) -> AsyncIterator[Container]:
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-fraud-"))
    database = BenchDatabase(db, workdir)
    database.create()
    try:
        overrides: dict[str, Any] = {
            "database_url": database.url,
            "fraud": {"enabled": fraud_on},
            "otp": {"account_daily_quota": 10_000_000},
        }
        if db == "postgres":
            from switchboard.storage.sql import migrate

            overrides["token_signing_key"] = secrets.token_hex(64)
            overrides["otp_pepper"] = secrets.token_hex(64)
            migrate.upgrade(database.url)
        container = build_container(load_settings(None, **overrides))
        await container.start(run_workers=False)
        try:
            yield container
        finally:
            await container.stop()
    finally:
        database.drop()
        shutil.rmtree(workdir, ignore_errors=True)


def _number(i: int) -> str:
    # prefix (i % PREFIXES) of +9190000xxxxx, a distinct last-3-digits per number
    return str(9_000_000_000 + (i % PREFIXES) * 1000 + (i // PREFIXES) % 1000)


async def _guard_alone(container: Container, count: int) -> float:
    account = await container.accounts.create_customer(
        email="g@example.com", password=PASSWORD, customer_id="C-G", name="Guard"
    )
    guard = container.fraud
    for i in range(PREFIXES):  # warm: one history read per prefix
        async with guard.admit(account, destination=f"+91{_number(i)}", country_code="91",
                               client_ip=None, verification_id=i):  # fmt: skip
            pass
    started = time.process_time()
    for i in range(PREFIXES, PREFIXES + count):
        async with guard.admit(account, destination=f"+91{_number(i)}", country_code="91",
                               client_ip=f"10.0.{i % 250}.{i % 199}", verification_id=i):  # fmt: skip
            pass
        guard.verified(account.id, f"+91{_number(i)}", "91")
    return (time.process_time() - started) / count


async def _sends(container: Container, count: int) -> float:
    account = await container.accounts.create_customer(
        email="s@example.com", password=PASSWORD, customer_id="C-S", name="Sends"
    )

    async def send(i: int) -> None:
        # every user enters the code: the conversion monitor sees a healthy account
        container.fraud.verified(account.id, f"+91{_number(i)}", "91")
        await container.verification.start(
            account,
            SendRequest(
                country_code="91", mobile_number=_number(i), flow_type="SMS",
                client_ip=f"10.0.{i % 250}.{i % 199}",
            ),
        )  # fmt: skip

    for i in range(PREFIXES):
        await send(i)
    started = time.process_time()
    for i in range(PREFIXES, PREFIXES + count):
        await send(i)
    return (time.process_time() - started) / count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="1,000 sends per loop")
    options = parser.parse_args()
    count = min(options.count, 1000) if options.quick else options.count
    count = min(count, 4 * PREFIXES)  # ≤ 5 numbers per prefix: below every threshold
    async with _container(options.db, True) as container:
        alone = await _guard_alone(container, count)
    async with _container(options.db, True) as container:
        on = await _sends(container, count)
    async with _container(options.db, False) as container:
        off = await _sends(container, count)
    print(
        f"fraud {options.db:8} | {count} sends | guard alone {alone * 1e6:.1f} µs "
        f"({alone / on:.1%} of a send) | send with guard {on * 1e6:.0f} µs, without "
        f"{off * 1e6:.0f} µs (difference {(on - off) / on:+.1%})"
    )


if __name__ == "__main__":
    asyncio.run(main())
