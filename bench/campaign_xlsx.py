"""A whole .xlsx campaign to an SMSC: every row's own text arrives, in the right encoding.

    .venv/bin/python -m bench.campaign_xlsx --rows 100000 [--db sqlite|postgres]

The server's container runs in this process (API over ASGI, workers, SMPP connector, window 100);
and so does the SMSC simulator (the same one `switchboard smsc-sim` runs). The sheet has Country,
Mobile, var1..var3; one row in ten carries a Devanagari name, so its text must go as UCS-2.
Prints accept time, drain rate and the check of every received text. Loopback only; bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import sys
import tempfile
import time
from pathlib import Path

import httpx
import xlsxwriter

from switchboard.api.app import create_app
from switchboard.bootstrap import build_container
from switchboard.channels.smpp.simulator import SimulatorBehaviour, SmscSimulator
from switchboard.config import load_settings
from switchboard.domain.encoding import Encoding, analyse, decode_gsm7, decode_ucs2

TEMPLATE = "Hi ##var1##, order ##var2## ships on ##var3##."


def row(n: int) -> tuple[int, int, str, str, str]:
    name = "राहुल" if n % 10 == 0 else f"Asha{n}"
    return (91, 9000000000 + n, name, f"A-{n}", f"{1 + n % 28} Dec")


def workbook(rows: int) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "constant_memory": True})
    sheet = book.add_worksheet()
    for column, name in enumerate(("Country", "Mobile", "var1", "var2", "var3")):
        sheet.write(0, column, name)
    for n in range(rows):
        for column, value in enumerate(row(n)):
            sheet.write(n + 1, column, value)
    book.close()
    return buffer.getvalue()


async def main(rows: int, db: str, time_limit_s: float) -> int:
    smsc = SmscSimulator(SimulatorBehaviour(receipt_delay_s=0.0), port=0)
    await smsc.start()
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'sb.db'}" if db == "sqlite" else db
        settings = load_settings(
            None, database_url=url, token_signing_key="k" * 64, otp_pepper="p" * 64,
            logging={"level": "WARNING"}, server={"access_log": False},
            messaging={"max_upload_rows": max(rows, 1000)},
            otp={"account_daily_quota": 10**7},
            connectors=[{"name": "carrier", "type": "smpp", "host": "127.0.0.1",
                         "port": smsc.port, "system_id": "switchboard", "password": "secret",
                         "window": 100, "tps": 100000}],
            routes=[{"channel": "SMS", "connectors": ["carrier"]}],
        )  # fmt: skip
        container = build_container(settings)
        await container.start(run_workers=True)
        await container.accounts.create_customer(
            email="bench@example.com", password="bench password", customer_id="C-BENCH"
        )
        content = workbook(rows)
        app = create_app(container, manage_lifecycle=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=600
        ) as http:
            key = base64.b64encode(b"bench password").decode()
            token = (
                await http.get("/auth/v1/authentication/token",
                               params={"customerId": "C-BENCH", "key": key})
            ).json()["token"]  # fmt: skip
            started = time.perf_counter()
            response = await http.post(
                "/verification/v3/send",
                params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN",
                        "messageType": "TRANSACTIONAL", "message": TEMPLATE},
                files={"file": ("r.xlsx", content, "application/octet-stream")},
                headers={"authToken": token},
            )  # fmt: skip
            accepted_s = time.perf_counter() - started
            data = response.json()["data"]
            print(f"accepted {data.get('accepted')} of {rows} rows in {accepted_s:.1f} s")
            deadline = time.monotonic() + time_limit_s
            while len(smsc.accepted) < rows and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            drain_s = time.perf_counter() - started - accepted_s
        await container.stop()
    await smsc.stop()
    received = {a.pdu.destination_addr: a.pdu for a in smsc.accepted}
    wrong = 0
    for n in range(rows):
        _, mobile, name, order, day = row(n)
        expected = f"Hi {name}, order {order} ships on {day}."
        pdu = received.get(f"91{mobile}")
        encoding = analyse(expected).encoding
        coding = 8 if encoding is Encoding.UCS2 else 0
        if pdu is None or pdu.data_coding != coding:
            wrong += 1
            continue
        text = decode_ucs2(pdu.short_message) if coding == 8 else decode_gsm7(pdu.short_message)
        if text != expected:
            wrong += 1
    print(
        f"SMSC received {len(smsc.accepted)} submit_sm for {len(received)} numbers in "
        f"{drain_s:.1f} s ({len(smsc.accepted) / max(drain_s, 1e-9):.0f}/s); "
        f"rows with a missing or wrong text/encoding: {wrong}"
    )
    return 1 if wrong else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL")
    parser.add_argument("--time-limit-s", type=float, default=1800)
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.rows, arguments.db, arguments.time_limit_s)))
