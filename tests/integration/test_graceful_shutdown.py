"""SIGTERM drains, unbinds and exits; a refused bind shows its SMPP status in /status."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.conftest import TEST_KEY, TEST_PEPPER, SettingsFactory, stop_while_claiming
from tests.integration.smpp.conftest import npm_smsc_dir, npm_smsc_factory  # noqa: F401
from tests.integration.smpp.peers import NpmSmsc

from switchboard.bootstrap import build_container
from switchboard.clock import FrozenClock
from switchboard.services.verification import SendRequest
from switchboard.storage.sql.engines import ConnectionsInUseWarning, Database
from switchboard.storage.sql.tables import messages

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def configure(tmp_path: Path, peer: NpmSmsc, password: str) -> tuple[Path, int]:
    port = free_port()
    config = tmp_path / "switchboard.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "sb.db"}"\n'
        f'token_signing_key = "{TEST_KEY}"\notp_pepper = "{TEST_PEPPER}"\n'
        f"[server]\nport = {port}\nshutdown_grace_s = 10\naccess_log = false\n"
        '[[connectors]]\nname = "carrier"\ntype = "smpp"\nhost = "127.0.0.1"\n'
        f'port = {peer.port}\nsystem_id = "{peer.system_id}"\npassword = "{password}"\n'
        "reconnect_initial_s = 0.2\nreconnect_max_s = 0.5\n"
        '[[routes]]\nchannel = "SMS"\nconnectors = ["carrier"]\n'
    )
    return config, port


def switchboard(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "switchboard", *args, "--config", str(config)]


def serve_with_customer(config: Path, password: str) -> subprocess.Popen[bytes]:
    """Customer C-1 made with the CLI, then `switchboard serve` in its own session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    subprocess.run(switchboard(config, "customers", "create", "--email", "a@example.com",
                               "--password", password, "--customer-id", "C-1"),
                   env=env, check=True, capture_output=True, timeout=60)  # fmt: skip
    return subprocess.Popen(
        switchboard(config, "serve"), env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


async def token_for(http: httpx.AsyncClient, password: str) -> str:
    key = base64.b64encode(password.encode()).decode()
    response = await http.get(
        "/auth/v1/authentication/token", params={"customerId": "C-1", "key": key}
    )
    token: str = response.json()["token"]
    return token


async def ready(base_url: str) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"{base_url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not start")


async def test_sigterm_drains_in_flight_work_unbinds_and_exits(
    tmp_path: Path,
    npm_smsc_factory: Callable[..., NpmSmsc],  # noqa: F811
) -> None:
    peer = npm_smsc_factory("--receipt-delay-ms", "20")
    config, port = configure(tmp_path, peer, peer.password)
    server = serve_with_customer(config, "shutdown password")
    try:
        base_url = f"http://127.0.0.1:{port}"
        await ready(base_url)
        async with httpx.AsyncClient(base_url=base_url) as http:
            token = await token_for(http, "shutdown password")
            numbers = ", ".join(f"91 {9800000000 + n}" for n in range(50))
            sent = await http.post(
                "/verification/v3/send",
                data={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "bye",
                      "messageType": "TRANSACTIONAL", "phoneNumbers": numbers},
                headers={"authToken": token},
            )  # fmt: skip
            assert sent.json()["data"].get("accepted") == 50, sent.text
        await peer.wait_records(1, timeout_s=10)
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after its graceful shutdown, so the status is -SIGTERM
        assert server.wait(30) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 15
        assert peer.records("unbind"), "no unbind before exit"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


async def test_a_refused_bind_shows_its_status(
    tmp_path: Path,
    npm_smsc_factory: Callable[..., NpmSmsc],  # noqa: F811
) -> None:
    peer = npm_smsc_factory()
    config, port = configure(tmp_path, peer, "wrongpw")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    server = subprocess.Popen(
        switchboard(config, "serve"), env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        base_url = f"http://127.0.0.1:{port}"
        await ready(base_url)
        deadline = time.monotonic() + 20
        binds: list[dict[str, object]] = []
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                status = (await http.get(f"{base_url}/status")).json()
                [carrier] = [c for c in status["connectors"] if c["name"] == "carrier"]
                binds = carrier["detail"]["binds"]
                if binds and binds[0]["last_bind_status"]:
                    break
                await asyncio.sleep(0.2)
        assert carrier["available"] is False
        assert binds[0]["last_bind_status"] not in (None, 0)
        cli = subprocess.run(switchboard(config, "status", "--url", base_url)[:-2], env=env,
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        assert "carrier" in cli.stdout
        assert "DOWN" in cli.stdout
        assert "last status 0x" in cli.stdout
        assert "binds held: 1 (share 1)" in cli.stdout  # one worker: the connector's whole share
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


async def test_closing_the_pools_under_a_running_transaction_is_said(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A task that outlives its process's stop is named when the pools close (an error
    under the tests' filter), not later by the garbage collector in an unrelated test."""
    database = Database(database_url)
    holding, release = asyncio.Event(), asyncio.Event()

    async def outlives_the_stop() -> None:
        async with database.read(every_account=True) as connection:
            await connection.execute(sa.text("SELECT 1"))
            holding.set()
            await release.wait()

    task = asyncio.create_task(outlives_the_stop())
    await holding.wait()
    with pytest.warns(ConnectionsInUseWarning, match="^1 database connection"):
        await database.dispose()
    assert "outlives_the_stop': 1" in capsys.readouterr().out  # the log names the task
    release.set()
    await task
    await database.dispose()  # nothing checked out now: no warning


async def test_a_stop_waits_for_the_claim_under_way_and_settles_what_it_claimed(
    make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """The dispatcher's round was claiming when the stop came: what the claim returns is sent
    and settled before stop() returns, not by a task left running past the pools' close."""
    built = build_container(make_settings(), clock=clock)
    await built.start(run_workers=False)
    try:
        account = await built.accounts.create_customer(
            email="dev@example.com", password="long enough", customer_id="C-1"
        )
        request = SendRequest(country_code="91", mobile_number="9800000001", flow_type="SMS")
        await built.verification.start(account, request)
        dispatcher = built.dispatcher
        await stop_while_claiming(built.database, "messages", dispatcher.run, dispatcher.stop)
        async with built.database.read() as connection:
            status = await connection.scalar(sa.select(messages.c.status))
        assert status in {"SUBMITTED", "DELIVERED"}
    finally:
        await built.stop()
