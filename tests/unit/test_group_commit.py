"""Group commit for the workers (worker/batching.py): drained at shutdown."""

from __future__ import annotations

import asyncio

from switchboard.worker.batching import GroupCommit


async def test_drain_waits_for_items_whose_callers_stopped_waiting() -> None:
    """A driver closed at shutdown cancels its receipt's caller; the receipt is still
    written, and drain() returns only once it and what queued behind it are."""
    gate = asyncio.Event()
    written: list[list[str]] = []

    async def flush(items: list[str]) -> list[int]:
        await gate.wait()
        written.append(items)
        return [len(item) for item in items]

    group: GroupCommit[str, int] = GroupCommit(flush)
    first = asyncio.create_task(group.submit("first"))
    await asyncio.sleep(0)  # its flush is under way, waiting at the gate
    second = asyncio.create_task(group.submit("second"))  # queued behind it
    await asyncio.sleep(0)
    first.cancel()
    second.cancel()
    draining = asyncio.create_task(group.drain())
    await asyncio.sleep(0.01)
    assert not draining.done()
    gate.set()
    await asyncio.wait_for(draining, 1)
    assert written == [["first"], ["second"]]
    assert first.cancelled()
    assert second.cancelled()


async def test_drain_with_nothing_submitted_returns_at_once() -> None:
    async def flush(items: list[str]) -> list[int]:
        raise AssertionError("nothing to flush")

    await asyncio.wait_for(GroupCommit(flush).drain(), 1)
