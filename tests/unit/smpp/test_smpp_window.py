"""The bind's submit window: urgent submits (OTPs) take the next free slot before bulk ones."""

from __future__ import annotations

import asyncio

from switchboard.channels.smpp.session import Window


async def test_an_urgent_submit_takes_the_next_slot_before_waiting_bulk_ones() -> None:
    window = Window(1)
    await window.acquire()
    order: list[str] = []

    async def take(name: str, *, urgent: bool) -> None:
        await window.acquire(urgent=urgent)
        order.append(name)

    bulk = [asyncio.create_task(take(f"bulk{n}", urgent=False)) for n in range(3)]
    await asyncio.sleep(0)
    otp = asyncio.create_task(take("otp", urgent=True))
    await asyncio.sleep(0)
    for _ in range(4):
        window.release()
        await asyncio.sleep(0)
    await asyncio.gather(*bulk, otp)
    assert order == ["otp", "bulk0", "bulk1", "bulk2"]


async def test_a_cancelled_waiter_does_not_keep_a_slot() -> None:
    window = Window(1)
    await window.acquire()
    waiter = asyncio.create_task(window.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    window.release()
    await asyncio.wait_for(window.acquire(urgent=True), 1)  # the slot came back


async def test_a_slot_granted_to_a_waiter_cancelled_at_once_passes_on() -> None:
    window = Window(1)
    await window.acquire()
    first = asyncio.create_task(window.acquire())
    second = asyncio.create_task(window.acquire())
    await asyncio.sleep(0)
    window.release()  # granted to `first` …
    first.cancel()  # … which is cancelled before it runs
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)
