"""The fraud guard's CPU per OTP send, in-process, against the send's own CPU.

    python -m bench.fraud --db sqlite|postgres [--rounds 6] [--sends 500] [--quick]

Containers on one database: one with the guard on, one with `[fraud] enabled = false`,
each sending for an account of its own, and a third whose guard screens without sending.
The first two's blocks of sequential `verification.start` calls alternate in ABBA order
(on-off, off-on, …), so both see the same database size, the same machine load and the
same run order. The guard alone (`admit` around nothing, then the sync
that exchanges those sends' counts) runs in a block of its own each round. Numbers are
distinct, spread over 1,000 prefixes (≤ 5 numbers per prefix, so no rule trips), each with a
new `clientIp`; every send is counted as verified (a healthy account: without it the
conversion monitor rightly pauses the country after two minutes). A first pass over the
prefixes warms the guard's copy of the counters (each new prefix costs one read of its
history). CPU is this process's `time.process_time()` (other engineers load the machine);
figures are medians over the rounds, with the load average at start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.deployment import PASSWORD, BenchDatabase
from switchboard.bootstrap import Container, build_container
from switchboard.config import load_settings
from switchboard.domain.accounts import Account
from switchboard.services.verification import SendRequest

PREFIXES = 1000


@contextlib.asynccontextmanager
async def _containers(db: str) -> AsyncIterator[tuple[Container, Container, Container]]:
    """(guard on, guard off, guard alone) on one database: each guard syncs its own sends."""
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-fraud-"))
    database = BenchDatabase(db, workdir)
    database.create()
    try:
        overrides: dict[str, Any] = {
            "database_url": database.url,
            "otp": {"account_daily_quota": 10_000_000},
            "token_signing_key": secrets.token_hex(64),
            "otp_pepper": secrets.token_hex(64),
        }
        if db == "postgres":
            from switchboard.storage.sql import migrate

            migrate.upgrade(database.url)
        built = [
            build_container(load_settings(None, **overrides, fraud={"enabled": enabled}))
            for enabled in (True, False, True)
        ]
        async with contextlib.AsyncExitStack() as stack:
            for container in built:
                await container.start(run_workers=False)
                stack.push_async_callback(container.stop)
            yield built[0], built[1], built[2]
    finally:
        database.drop()
        shutil.rmtree(workdir, ignore_errors=True)


def _number(i: int) -> str:
    # prefix (i % PREFIXES) of +9190000xxxxx, a distinct last-3-digits per number
    return str(9_000_000_000 + (i % PREFIXES) * 1000 + (i // PREFIXES) % 1000)


def _client_ip(i: int) -> str:
    return f"10.{i // 62500 % 250}.{i // 250 % 250}.{i % 250}"


async def _guard_alone(container: Container, account: Account, first: int, count: int) -> float:
    guard = container.fraud
    started = time.process_time()
    for i in range(first, first + count):
        async with guard.admit(account, destination=f"+91{_number(i)}", country_code="91",
                               client_ip=_client_ip(i), verification_id=i):  # fmt: skip
            pass
        guard.verified(account.id, f"+91{_number(i)}", "91")
    await guard.sync()  # the exchange of these sends' counts is theirs
    return (time.process_time() - started) / count


async def _sends(container: Container, account: Account, first: int, count: int) -> float:
    started = time.process_time()
    for i in range(first, first + count):
        # every user enters the code: the conversion monitor sees a healthy account
        container.fraud.verified(account.id, f"+91{_number(i)}", "91")
        await container.verification.start(
            account,
            SendRequest(
                country_code="91", mobile_number=_number(i), flow_type="SMS",
                client_ip=_client_ip(i),
            ),
        )  # fmt: skip
    return (time.process_time() - started) / count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--sends", type=int, default=500, help="sends per block")
    parser.add_argument("--quick", action="store_true", help="4 rounds of 250 sends")
    options = parser.parse_args()
    rounds, count = (4, 250) if options.quick else (options.rounds, options.sends)
    count = min(count, 4 * PREFIXES // rounds)  # ≤ 5 numbers per prefix: below every threshold
    load_before = os.getloadavg()
    async with _containers(options.db) as (on, off, alone):
        accounts = {}
        for name, container in (("on", on), ("off", off), ("alone", alone)):
            accounts[name] = await container.accounts.create_customer(
                email=f"{name}@example.com", password=PASSWORD, customer_id=f"C-{name}",
                name=name,
            )  # fmt: skip
        await _guard_alone(alone, accounts["alone"], 0, PREFIXES)  # warm
        await _sends(on, accounts["on"], 0, PREFIXES)
        await _sends(off, accounts["off"], 0, PREFIXES)
        figures: dict[str, list[float]] = {"alone": [], "on": [], "off": []}
        for round_ in range(rounds):
            first = PREFIXES + round_ * count
            order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
            for name in order:
                container = on if name == "on" else off
                figures[name].append(await _sends(container, accounts[name], first, count))
            figures["alone"].append(await _guard_alone(alone, accounts["alone"], first, count))
    load_after = os.getloadavg()
    alone, with_guard, without = (statistics.median(figures[n]) for n in ("alone", "on", "off"))
    differences = [a - b for a, b in zip(figures["on"], figures["off"], strict=True)]
    difference = statistics.median(differences)
    print(
        f"fraud {options.db:8} | {rounds} rounds x {count} sends | load "
        f"{load_before[0]:.1f} → {load_after[0]:.1f} | guard alone {alone * 1e6:.1f} µs "
        f"({alone / with_guard:.1%} of a send) | send with guard {with_guard * 1e6:.0f} µs, "
        f"without {without * 1e6:.0f} µs | paired difference {difference * 1e6:+.0f} µs "
        f"({difference / with_guard:+.1%}; rounds "
        f"{', '.join(f'{d * 1e6:+.0f}' for d in differences)})"
    )


if __name__ == "__main__":
    asyncio.run(main())
