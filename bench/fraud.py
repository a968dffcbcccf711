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

What the guard costs in a send is measured inside the sends too: the CPU spent in its `admit`
(the screen, the syncs it runs, the records after the body), which carries the cost of running
on caches the send's own work has just evicted — the guard alone runs 2-3x faster than the same
code inside sends. The whole-send difference is the check that nothing else moves with the
guard; one block's SQLite checkpoints make it swing by ± several hundred µs per round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
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
from switchboard.fraud.guard import FraudGuard
from switchboard.services.verification import SendRequest

PREFIXES = 1000


class _TimedGuard:
    """The guard as the send path calls it, with the CPU spent inside it added up."""

    def __init__(self, guard: FraudGuard) -> None:
        self.guard = guard
        self.cpu_s = 0.0

    @contextlib.asynccontextmanager
    async def admit(self, account: Account, **send: Any) -> AsyncIterator[None]:
        started = time.process_time()
        screened = self.guard.admit(account, **send)
        await screened.__aenter__()
        self.cpu_s += time.process_time() - started
        try:
            yield
        except BaseException as exc:
            await screened.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        started = time.process_time()
        await screened.__aexit__(None, None, None)
        self.cpu_s += time.process_time() - started

    def verified(self, account_id: str, destination: str, country_code: str) -> None:
        self.guard.verified(account_id, destination, country_code)

    async def refuse_country(self, account: Account, **send: Any) -> None:
        await self.guard.refuse_country(account, **send)


def _time_guard(container: Container) -> _TimedGuard:
    timed = _TimedGuard(container.fraud)
    # the service's own reference (the container wires it); a benchmark's liberty
    container.verification._guard = timed
    return timed


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


async def _sends(
    container: Container, account: Account, first: int, count: int
) -> tuple[float, float, float, int]:
    """CPU per send, the guard's part of it, the verification counts' part (paid when a
    code is checked, here in the send loop), and the garbage collections run."""
    timed = container.verification._guard
    assert isinstance(timed, _TimedGuard)
    inside = timed.cpu_s
    counting = 0.0
    collections = sum(stat["collections"] for stat in gc.get_stats())
    started = time.process_time()
    for i in range(first, first + count):
        # every user enters the code: the conversion monitor sees a healthy account
        counted = time.process_time()
        container.fraud.verified(account.id, f"+91{_number(i)}", "91")
        counting += time.process_time() - counted
        await container.verification.start(
            account,
            SendRequest(
                country_code="91", mobile_number=_number(i), flow_type="SMS",
                client_ip=_client_ip(i),
            ),
        )  # fmt: skip
    return (
        (time.process_time() - started) / count,
        (timed.cpu_s - inside) / count,
        counting / count,
        sum(stat["collections"] for stat in gc.get_stats()) - collections,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--sends", type=int, default=250, help="sends per block")
    parser.add_argument("--quick", action="store_true", help="6 rounds of 250 sends")
    options = parser.parse_args()
    rounds, count = (6, 250) if options.quick else (options.rounds, options.sends)
    count = min(count, 4 * PREFIXES // rounds)  # ≤ 5 numbers per prefix: below every threshold
    load_before = os.getloadavg()
    async with _containers(options.db) as (on, off, alone):
        accounts = {}
        for name, container in (("on", on), ("off", off), ("alone", alone)):
            accounts[name] = await container.accounts.create_customer(
                email=f"{name}@example.com", password=PASSWORD, customer_id=f"C-{name}",
                name=name,
            )  # fmt: skip
        _time_guard(on), _time_guard(off)
        await _guard_alone(alone, accounts["alone"], 0, PREFIXES)  # warm
        await _sends(on, accounts["on"], 0, PREFIXES)
        await _sends(off, accounts["off"], 0, PREFIXES)
        names = ("alone", "on", "off", "in", "in_off", "verified", "verified_off", "gc", "gc_off")
        figures: dict[str, list[float]] = {n: [] for n in names}
        for round_ in range(rounds):
            first = PREFIXES + round_ * count
            order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
            for name in order:
                container = on if name == "on" else off
                send, inside, counting, collected = await _sends(
                    container, accounts[name], first, count
                )
                suffix = "" if name == "on" else "_off"
                figures[name].append(send)
                figures["in" if name == "on" else "in_off"].append(inside)
                figures["verified" + suffix].append(counting)
                figures["gc" + suffix].append(collected)
            figures["alone"].append(await _guard_alone(alone, accounts["alone"], first, count))
    load_after = os.getloadavg()
    median = {name: statistics.median(values) for name, values in figures.items()}
    differences = [a - b for a, b in zip(figures["on"], figures["off"], strict=True)]
    difference = statistics.median(differences)
    spread = statistics.quantiles(differences, n=4) if len(differences) > 1 else [0, 0, 0]
    on_send = median["on"]
    print(
        f"fraud {options.db:8} | {rounds} rounds x {count} sends | load "
        f"{load_before[0]:.1f} → {load_after[0]:.1f}\n"
        f"  guard inside the sends {median['in'] * 1e6:.1f} µs ({median['in'] / on_send:.1%} "
        f"of a send; disabled guard {median['in_off'] * 1e6:.1f} µs)\n"
        f"  verification counts {median['verified'] * 1e6:.1f} µs per code (disabled "
        f"{median['verified_off'] * 1e6:.1f} µs); collections per block "
        f"{median['gc']:.0f} on, {median['gc_off']:.0f} off\n"
        f"  guard alone {median['alone'] * 1e6:.1f} µs ({median['alone'] / on_send:.1%})\n"
        f"  send with guard {on_send * 1e6:.0f} µs, without {median['off'] * 1e6:.0f} µs, "
        f"paired difference {difference * 1e6:+.0f} µs ({difference / on_send:+.1%}; "
        f"quartiles {spread[0] * 1e6:+.0f} … {spread[2] * 1e6:+.0f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
