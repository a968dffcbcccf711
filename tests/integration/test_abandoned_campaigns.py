"""A campaign whose upload was being staged when its server died is aborted and refunded by the
next server's sweeper: nothing of it is sent, the wallet is whole again."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import xlsxwriter
from tests.conftest import TEST_KEY, TEST_PEPPER
from tests.integration.test_crash_recovery import Processes, free_port, wait_healthy

from switchboard.storage.sql.engines import sync_engine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROWS = 100_000


def _workbook(rows: int) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "constant_memory": True})
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ("Country", "Mobile"))
    for row in range(1, rows + 1):
        sheet.write_row(row, 0, ("91", str(9000000000 + row)))
    book.close()
    return buffer.getvalue()


def _state(database_url: str) -> tuple[str | None, int, int]:
    """The campaign's status, its HELD messages, and the wallet's balance."""
    engine = sync_engine(database_url)
    try:
        with engine.connect() as connection:
            status = connection.execute(sa.text("SELECT status FROM campaigns")).scalar()
            held = connection.execute(
                sa.text("SELECT count(*) FROM messages WHERE status = 'HELD'")
            ).scalar_one()
            balance = connection.execute(
                sa.text("SELECT balance FROM wallets WHERE account_id = 'C-SWEEP'")
            ).scalar_one()
    finally:
        engine.dispose()
    return status, int(held), int(balance)


async def test_a_campaign_left_staging_by_a_dead_server_is_aborted_and_refunded(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    config = tmp_path / "switchboard.toml"
    config.write_text(
        f'database_url = "{database_url}"\n'
        f'token_signing_key = "{TEST_KEY}"\notp_pepper = "{TEST_PEPPER}"\n'
        f"[server]\nport = {port}\nshutdown_grace_s = 1\naccess_log = false\n"
        '[logging]\nlevel = "ERROR"\n'
        "[messaging]\nstaging_abandoned_s = 3\n"
        '[billing]\nenabled = true\ndefault_price = "0.01"\n'
    )
    env = {**os.environ, "SWITCHBOARD_SERVER__PORT": str(port)}
    env.pop("SWITCHBOARD_CONFIG", None)
    procs = Processes(config, env)
    base_url = f"http://127.0.0.1:{port}"
    content = await asyncio.to_thread(_workbook, ROWS)
    try:
        procs.run("db", "upgrade")
        procs.run("customers", "create", "--email", "s@example.com", "--password",
                  "sweeper password", "--customer-id", "C-SWEEP")  # fmt: skip
        procs.run("customers", "topup", "C-SWEEP", "5000")
        _, _, balance_before = _state(database_url)
        server = procs.start("serve")
        await wait_healthy(base_url)
        key = base64.b64encode(b"sweeper password").decode()
        async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
            token = (
                await http.get(
                    "/auth/v1/authentication/token", params={"customerId": "C-SWEEP", "key": key}
                )
            ).json()["token"]
            upload = asyncio.create_task(
                http.post(
                    "/verification/v3/send",
                    params={
                        "type": "SMS",
                        "flowType": "SMS",
                        "senderId": "ACMEIN",
                        "messageType": "TRANSACTIONAL",
                        "message": "hello",
                    },
                    files={"file": ("big.xlsx", content, "application/octet-stream")},
                    headers={"authToken": token},
                )
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status, held, _ = await asyncio.to_thread(_state, database_url)
                if status == "STAGING" and held > 0:
                    break
                await asyncio.sleep(0.05)
            assert status == "STAGING", "the upload never started staging"
            os.killpg(server.pid, signal.SIGKILL)  # mid-staging: the customer gets no answer
            server.wait(10)
            with contextlib.suppress(httpx.HTTPError):
                await upload
        status, held, balance = _state(database_url)
        assert (status, held > 0, balance < balance_before) == ("STAGING", True, True)

        procs.start("serve")  # a new server's housekeeping finds it
        await wait_healthy(base_url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, held, balance = await asyncio.to_thread(_state, database_url)
            if status != "STAGING":
                break
            await asyncio.sleep(0.2)
    finally:
        procs.stop_all()
    assert status == "REJECTED"
    assert held == 0
    assert balance == balance_before
    engine = sync_engine(database_url)
    with engine.connect() as connection:
        sendable = connection.execute(
            sa.text("SELECT count(*) FROM messages WHERE status <> 'HELD'")
        ).scalar_one()
    engine.dispose()
    assert sendable == 0
