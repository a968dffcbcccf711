"""Wake-ups across processes through a Unix datagram socket (worker/wake.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from switchboard.worker.wake import WakeListener, WakeSender


async def test_a_burst_of_wake_ups_wakes_once_and_a_missing_listener_is_no_error(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "wake.sock")
    sender = WakeSender(path)
    sender()  # nobody listens yet: best effort, no exception
    woken = asyncio.Event()
    count = 0

    def wake() -> None:
        nonlocal count
        count += 1
        woken.set()

    listener = WakeListener(path, wake)
    listener.start()
    try:
        for _ in range(50):
            sender()
        await asyncio.wait_for(woken.wait(), 5)
        await asyncio.sleep(0.05)
        assert 1 <= count <= 50  # drained in bursts, never one call per lost datagram
        woken.clear()
        sender()
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        listener.close()
        sender.close()
    assert not Path(path).exists()


async def test_a_socket_left_by_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "wake.sock"
    path.write_text("stale")
    woken = asyncio.Event()
    listener = WakeListener(str(path), woken.set)
    listener.start()
    try:
        sender = WakeSender(str(path))
        sender()
        await asyncio.wait_for(woken.wait(), 5)
        sender.close()
    finally:
        listener.close()
