"""Chaos: PostgreSQL goes away and comes back, and the worker is killed, during a 5,000-message
campaign with OTPs in flight; every accepted message still reaches the SMSC, no OTP goes twice.

The restart is played by a fault proxy in front of PostgreSQL (every connection reset, new ones
refused for a few seconds, as a restarting server does), because the PostgreSQL on this machine
is shared by every other test run and must not really be restarted.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import xlsxwriter
from tests.conftest import TEST_KEY, TEST_PEPPER
from tests.integration.test_crash_recovery import Processes, counts, free_port, wait_healthy

from switchboard.channels.smpp.simulator import SimulatorBehaviour, SmscSimulator
from switchboard.testing.faultproxy import FaultProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

CAMPAIGN = 5000
OTPS = 40
RESTART_S = 3.0


@pytest.fixture
async def simulator() -> AsyncIterator[SmscSimulator]:
    smsc = SmscSimulator(SimulatorBehaviour(receipt_delay_s=0.05), port=0, seed=11)
    await smsc.start()
    yield smsc
    await smsc.stop()


@pytest.fixture
async def database_proxy() -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", 5432) as proxy:
        yield proxy


def _workbook(numbers: list[str]) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "constant_memory": True})
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ("Country", "Mobile", "var1"))
    for row, number in enumerate(numbers, start=1):
        sheet.write_row(row, 0, ("91", number[2:], f"R{row}"))
    book.close()
    return buffer.getvalue()


async def _postgres_restart(proxy: FaultProxy) -> None:
    proxy.refuse = True
    proxy.reset()
    await asyncio.sleep(RESTART_S)
    proxy.refuse = False


async def _until(condition: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not reached within {timeout_s} s")


async def test_database_restart_and_worker_kill_mid_campaign_lose_nothing(
    tmp_path: Path,
    postgres_url: str,
    simulator: SmscSimulator,
    database_proxy: FaultProxy,
) -> None:
    from tests.conftest import _truncate

    _truncate(postgres_url)
    proxied = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{database_proxy.port}")
    port = free_port()
    config = tmp_path / "switchboard.toml"
    config.write_text(
        f'database_url = "{proxied}"\n'
        f'token_signing_key = "{TEST_KEY}"\notp_pepper = "{TEST_PEPPER}"\n'
        f"[server]\nport = {port}\nshutdown_grace_s = 2\naccess_log = false\n"
        "[worker]\nlease_s = 2\npoll_interval_s = 0.1\n"
        '[logging]\nlevel = "ERROR"\n'
        "[otp]\nsends_per_10_min = 100\nsends_per_day = 100\n"
        # its OTPs fill one number range at once: the fraud guard would rightly stop them
        "[fraud]\nenabled = false\n"
        '[[connectors]]\nname = "carrier"\ntype = "smpp"\nhost = "127.0.0.1"\n'
        f'port = {simulator.port}\nsystem_id = "switchboard"\npassword = "secret"\n'
        # a paced drain (~12 s) leaves time to break things in the middle of it
        "window = 20\ntps = 400\nreconnect_initial_s = 0.2\nreconnect_max_s = 1\n"
        "response_timeout_s = 3\n"
        '[[routes]]\nchannel = "SMS"\nconnectors = ["carrier"]\n'
    )
    env = {**os.environ, "SWITCHBOARD_SERVER__PORT": str(port)}
    env.pop("SWITCHBOARD_CONFIG", None)
    procs = Processes(config, env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        # in a thread: the proxy it talks through runs on this event loop
        await asyncio.to_thread(
            procs.run, "customers", "create", "--email", "ops@example.com", "--password",
            "chaos test password", "--customer-id", "C-CHAOS",
        )  # fmt: skip
        procs.start("serve", "--no-worker")
        worker = procs.start("worker")
        await wait_healthy(base_url)
        key = base64.b64encode(b"chaos test password").decode()
        campaign_numbers = [f"91{9000000000 + n}" for n in range(CAMPAIGN)]
        otp_numbers = [f"91{8000000000 + n}" for n in range(OTPS)]
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            token = (
                await http.get(
                    "/auth/v1/authentication/token", params={"customerId": "C-CHAOS", "key": key}
                )
            ).json()["token"]
            headers = {"authToken": token}
            uploaded = await http.post(
                "/verification/v3/send",
                params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN",
                        "messageType": "PROMOTIONAL", "message": "Offer for ##var1##"},
                files={"file": ("campaign.xlsx", _workbook(campaign_numbers), "application/octet-stream")},
                headers=headers,
            )  # fmt: skip
            assert uploaded.json()["data"]["accepted"] == CAMPAIGN, uploaded.text
            for number in otp_numbers[: OTPS // 2]:
                sent = await http.post(
                    "/verification/v3/send",
                    params={"countryCode": "91", "mobileNumber": number[2:], "flowType": "SMS",
                            "otpTimeout": "600"},
                    headers=headers,
                )  # fmt: skip
                assert sent.json()["responseCode"] == 200, sent.text

            await _until(lambda: len(simulator.accepted) >= CAMPAIGN // 5, 60)
            await _postgres_restart(database_proxy)

            # OTPs accepted right after the restart (the API's pool reconnects)
            for number in otp_numbers[OTPS // 2 :]:
                for _attempt in range(20):
                    sent = await http.post(
                        "/verification/v3/send",
                        params={"countryCode": "91", "mobileNumber": number[2:],
                                "flowType": "SMS", "otpTimeout": "600"},
                        headers=headers,
                    )  # fmt: skip
                    if sent.json()["responseCode"] == 200:
                        break
                    await asyncio.sleep(0.25)  # a 500 while the pool finds the server again
                assert sent.json()["responseCode"] == 200, sent.text

            await _until(lambda: len(simulator.accepted) >= CAMPAIGN // 2, 90)
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
            procs.start("worker")

            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                statuses, _, _ = await asyncio.to_thread(counts, postgres_url)
                if sum(statuses[s] for s in ("QUEUED", "SENDING", "HELD")) == 0:
                    break
                await asyncio.sleep(0.25)
    finally:
        procs.stop_all()

    statuses, reclaimed, unknown_otps = counts(postgres_url)
    received = Counter(pdu.destination_addr for pdu in simulator.submits)
    missing = [n for n in campaign_numbers if received[n] == 0]
    assert missing == [], f"{len(missing)} accepted campaign messages never reached the SMSC"
    assert sum(received[n] - 1 for n in campaign_numbers if received[n] > 1) <= reclaimed
    assert all(received[n] <= 1 for n in otp_numbers), "an OTP went out twice"
    assert sum(received[n] for n in otp_numbers) >= OTPS - unknown_otps
    assert statuses["QUEUED"] == statuses["SENDING"] == statuses["HELD"] == 0
    assert database_proxy.resets > 0
