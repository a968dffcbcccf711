"""kill -9 of the server or of a worker mid-run, then a restart: nothing accepted is lost,
bulk duplicates stay within the re-claimed (ambiguous) messages, and no OTP goes out twice."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.conftest import TEST_KEY, TEST_PEPPER

from switchboard.channels.smpp.simulator import SimulatorBehaviour, SmscSimulator
from switchboard.storage.sql.engines import sync_engine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

BULK = 2000
OTPS = 40


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def simulator() -> AsyncIterator[SmscSimulator]:
    smsc = SmscSimulator(SimulatorBehaviour(receipt_delay_s=0.05), port=0, seed=7)
    await smsc.start()
    yield smsc
    await smsc.stop()


class Processes:
    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config = config
        self.env = env
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "switchboard", *args, "--config", str(self.config)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.running.append(process)
        return process

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "switchboard", *args, "--config", str(self.config)],
            env=self.env, capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        return done.stdout.decode()

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


@pytest.fixture
def processes(tmp_path: Path, database_url: str, simulator: SmscSimulator) -> Iterator[Processes]:
    port = free_port()
    config = tmp_path / "switchboard.toml"
    config.write_text(
        f'database_url = "{database_url}"\n'
        f'token_signing_key = "{TEST_KEY}"\notp_pepper = "{TEST_PEPPER}"\n'
        f"[server]\nport = {port}\nshutdown_grace_s = 2\naccess_log = false\n"
        "[worker]\nlease_s = 2\npoll_interval_s = 0.1\n"
        '[logging]\nlevel = "WARNING"\n'
        "[otp]\nsends_per_10_min = 100\nsends_per_day = 100\n"
        # its OTPs fill one number range at once: the fraud guard would rightly stop them
        "[fraud]\nenabled = false\n"
        '[[connectors]]\nname = "carrier"\ntype = "smpp"\nhost = "127.0.0.1"\n'
        f'port = {simulator.port}\nsystem_id = "switchboard"\npassword = "secret"\n'
        "window = 50\ntps = 5000\nreconnect_initial_s = 0.2\nreconnect_max_s = 1\n"
        "response_timeout_s = 3\n"
        '[[routes]]\nchannel = "SMS"\nconnectors = ["carrier"]\n'
    )
    env = {**os.environ, "SWITCHBOARD_SERVER__PORT": str(port)}
    env.pop("SWITCHBOARD_CONFIG", None)
    procs = Processes(config, env)
    procs.base_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    procs.run("db", "upgrade")
    procs.run("customers", "create", "--email", "ops@example.com", "--password",
              "crash test password", "--customer-id", "C-CRASH")  # fmt: skip
    yield procs
    procs.stop_all()


async def wait_healthy(base_url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"{base_url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not become ready")


def counts(database_url: str) -> tuple[Counter[str], int, int]:
    engine = sync_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT status, count(*) FROM messages GROUP BY status")
        ).all()
        statuses: Counter[str] = Counter({str(status): int(count) for status, count in rows})
        reclaimed = connection.execute(
            sa.text("SELECT coalesce(sum(attempts - 1), 0) FROM messages WHERE attempts > 1")
        ).scalar_one()
        unknown_otps = connection.execute(
            sa.text("SELECT count(*) FROM messages WHERE status = 'UNKNOWN' AND lane = 0")
        ).scalar_one()
    engine.dispose()
    return statuses, int(reclaimed), int(unknown_otps)


@pytest.mark.parametrize("victim", ["server", "worker"])
async def test_kill_9_mid_run_loses_nothing_and_never_resends_an_otp(
    processes: Processes, simulator: SmscSimulator, database_url: str, victim: str
) -> None:
    base_url: str = processes.base_url  # type: ignore[attr-defined]
    if victim == "server":
        server = processes.start("serve")
    else:
        processes.start("serve", "--no-worker")
        server = processes.start("worker")
    await wait_healthy(base_url)
    key = base64.b64encode(b"crash test password").decode()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        token = (
            await http.get(
                "/auth/v1/authentication/token", params={"customerId": "C-CRASH", "key": key}
            )
        ).json()["token"]
        headers = {"authToken": token}
        bulk_numbers = [f"91{9000000000 + n}" for n in range(BULK)]
        for start in range(0, BULK, 1000):
            chunk = ", ".join(f"91 {n[2:]}" for n in bulk_numbers[start : start + 1000])
            response = await http.post(
                "/verification/v3/send",
                data={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN",
                      "messageType": "PROMOTIONAL", "message": "bulk", "phoneNumbers": chunk},
                headers=headers,
            )  # fmt: skip
            assert response.json()["data"]["accepted"] == 1000
        otp_numbers = [f"91{8000000000 + n}" for n in range(OTPS)]
        for number in otp_numbers:
            sent = await http.post(
                "/verification/v3/send",
                params={"countryCode": "91", "mobileNumber": number[2:], "flowType": "SMS",
                        "otpTimeout": "600"},
                headers=headers,
            )  # fmt: skip
            assert sent.json()["responseCode"] == 200
        # let the drain get going, then kill -9 in the middle of it
        deadline = time.monotonic() + 30
        while len(simulator.accepted) < BULK // 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        if victim == "server":
            processes.start("serve")
            await wait_healthy(base_url)
        else:
            processes.start("worker")

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            statuses, _, _ = counts(database_url)
            open_count = sum(statuses[s] for s in ("QUEUED", "SENDING", "HELD"))
            if open_count == 0:  # receipts lost with the killed bind leave some SUBMITTED
                break
            await asyncio.sleep(0.25)

    statuses, reclaimed, unknown_otps = counts(database_url)
    received = Counter(pdu.destination_addr for pdu in simulator.submits)
    missing = [n for n in bulk_numbers if received[n] == 0]
    assert missing == [], f"{len(missing)} accepted bulk messages never reached the SMSC"
    duplicates = sum(received[n] - 1 for n in bulk_numbers if received[n] > 1)
    assert duplicates <= reclaimed
    assert all(received[n] <= 1 for n in otp_numbers), "an OTP went out twice"
    assert sum(received[n] for n in otp_numbers) >= OTPS - unknown_otps
    assert statuses["QUEUED"] == statuses["SENDING"] == statuses["HELD"] == 0
