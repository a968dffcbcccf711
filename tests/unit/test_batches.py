"""Group commit for request paths (storage/sql/batches.py)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import DBAPIError

from switchboard.storage.sql.batches import Batches, Waiting


class Item(Waiting[str]):
    def __init__(self, key: str, value: str) -> None:
        super().__init__()
        self.key = key
        self.value = value


class DeadlockError(Exception):
    sqlstate = "40P01"


class Recorder:
    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.failures = failures or []
        self.gate = asyncio.Event()
        self.gate.set()

    async def run(self, batch: list[Item]) -> None:
        await self.gate.wait()
        self.batches.append([x.value for x in batch])
        if self.failures:
            raise self.failures.pop(0)
        for item in batch:
            item.succeed(item.value.upper())


def batches(recorder: Recorder) -> Batches[Item]:
    return Batches(recorder.run, key=lambda x: x.key, max_size=3, name="test")


async def test_a_lone_item_goes_at_once_and_a_crowd_shares_transactions() -> None:
    recorder = Recorder()
    group = batches(recorder)
    alone = Item("a", "x")
    await group.submit(alone)
    assert alone.done.result() == "X"
    items = [Item(f"k{n}", f"v{n}") for n in range(7)]
    await asyncio.gather(*(group.submit(item) for item in items))
    assert recorder.batches == [["x"], ["v0", "v1", "v2"], ["v3", "v4", "v5"], ["v6"]]
    assert [item.done.result() for item in items] == [f"V{n}" for n in range(7)]


async def test_one_key_per_batch_in_arrival_order() -> None:
    recorder = Recorder()
    group = batches(recorder)
    items = [Item("same", "1"), Item("other", "2"), Item("same", "3"), Item("same", "4")]
    await asyncio.gather(*(group.submit(item) for item in items))
    assert recorder.batches == [["1", "2"], ["3"], ["4"]]


async def test_a_request_gone_before_its_batch_is_never_written() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    group = batches(recorder)
    first, second = Item("a", "first"), Item("b", "second")
    running = asyncio.create_task(group.submit(first))
    await asyncio.sleep(0)  # the first batch starts and waits at the gate
    gone = asyncio.create_task(group.submit(second))
    await asyncio.sleep(0)
    second.done.cancel()  # as a client disconnect cancels the request awaiting it
    recorder.gate.set()
    await running
    await gone
    assert recorder.batches == [["first"]]


async def test_a_deadlock_reruns_the_batch_and_other_errors_reach_every_item() -> None:
    deadlock = DBAPIError("UPDATE messages", {}, DeadlockError())
    recorder = Recorder([deadlock, deadlock])
    group = batches(recorder)
    item = Item("a", "x")
    await group.submit(item)
    assert item.done.result() == "X"
    assert recorder.batches == [["x"]] * 3

    recorder.failures = [RuntimeError("disk full")]
    items = [Item("a", "y"), Item("b", "z")]
    await asyncio.gather(*(group.submit(i) for i in items))
    for failed in items:
        with pytest.raises(RuntimeError, match="disk full"):
            failed.done.result()
