"""`serve --processes N`: API copies share the port, the workers run in a process of their own
and are woken at once, a dead child comes back, SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import TEST_KEY, TEST_PEPPER
from tests.integration.test_graceful_shutdown import (
    free_port,
    ready,
    serve_with_customer,
    token_for,
)

pytestmark = pytest.mark.timeout(120)

PASSWORD = "processes password"


def children(pid: int) -> set[int]:
    """Live children of any of the process's threads (a restart comes from its monitor)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found |= {int(child) for child in (task / "children").read_text().split()}
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return {child for child in found if alive(child)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


async def eventually_children(pid: int, count: int, not_in: set[int]) -> set[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = children(pid)
        if len(found) == count and not found & not_in:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} new API processes, saw {children(pid)}")


async def send_otps(base_url: str, token: str, count: int, offset: int) -> set[str]:
    ids: set[str] = set()
    for n in range(count):  # a new connection each time: the kernel picks a process per connect
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            body = (
                await http.post(
                    "/verification/v3/send",
                    params={"countryCode": "91", "mobileNumber": f"98{offset + n:08d}",
                            "flowType": "SMS"},
                    headers={"authToken": token},
                )
            ).json()  # fmt: skip
        assert body["responseCode"] == 200, body
        ids.add(body["data"]["verificationId"])
    return ids


async def sent_by_the_worker(base_url: str, token: str, destinations: set[str]) -> None:
    """Every OTP reaches the sandbox carrier well before the worker's 30 s poll."""
    deadline = time.monotonic() + 10
    seen: set[str] = set()
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        while time.monotonic() < deadline:
            body = (
                await http.get(
                    "/api/v1/sandbox/outbox", params={"limit": 500}, headers={"authToken": token}
                )
            ).json()
            seen = {entry["destination"] for entry in body["data"]["messages"]}
            if destinations <= seen:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"not sent within 10 s: {sorted(destinations - seen)[:5]}")


async def test_copies_serve_one_port_come_back_when_killed_and_stop_with_the_first(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "switchboard.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "sb.db"}"\n'
        f'token_signing_key = "{TEST_KEY}"\notp_pepper = "{TEST_PEPPER}"\n'
        f"[server]\nport = {port}\nprocesses = 3\nshutdown_grace_s = 5\naccess_log = false\n"
        # polling alone would take 30 s: the OTPs below arrive only if the wake-ups work
        "[worker]\npoll_interval_s = 30\n"
        # 30 numbers of one range at once: the fraud guard would rightly stop them
        "[fraud]\nenabled = false\n"
    )
    server = serve_with_customer(config, PASSWORD)
    try:
        base_url = f"http://127.0.0.1:{port}"
        await ready(base_url)
        copies = await eventually_children(server.pid, 3, set())  # 2 API + 1 worker
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            token = await token_for(http, PASSWORD)
        assert len(await send_otps(base_url, token, 30, 0)) == 30
        await sent_by_the_worker(base_url, token, {f"+9198{n:08d}" for n in range(30)})

        victim = min(copies)
        os.kill(victim, signal.SIGKILL)
        replaced = await eventually_children(server.pid, 3, {victim})
        assert replaced - copies, "a new process took the killed one's place"
        await ready(base_url)
        assert len(await send_otps(base_url, token, 30, 100)) == 30
        await sent_by_the_worker(base_url, token, {f"+9198{n:08d}" for n in range(100, 130)})

        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in replaced) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not any(alive(pid) for pid in replaced), "every copy stops with the first"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
