"""API and worker in different processes sharing PostgreSQL: NOTIFY wakes the worker at once."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.conftest import TEST_KEY, TEST_PEPPER

from switchboard.bootstrap import build_container
from switchboard.config import load_settings
from switchboard.services.verification import SendRequest

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


async def test_an_otp_queued_by_an_api_process_is_sent_long_before_the_workers_poll(
    postgres_url: str,
) -> None:
    def settings() -> object:
        return load_settings(
            None,
            database_url=postgres_url,
            token_signing_key=TEST_KEY,
            otp_pepper=TEST_PEPPER,
            # polling alone would take 30 s: only a wake-up explains a faster send
            worker={"poll_interval_s": 30},
        )

    worker = build_container(settings())  # type: ignore[arg-type]
    api = build_container(settings())  # type: ignore[arg-type]
    await worker.start(run_workers=True)
    await api.start(run_workers=False)
    try:
        await asyncio.sleep(0.5)  # the worker's first poll and its LISTEN
        account = await api.accounts.create_customer(
            email="wake@example.com", password="wake password", customer_id="C-WAKE"
        )
        for attempt in range(3):  # each send must wake the worker on its own
            number = f"98765{attempt:05d}"
            started = time.monotonic()
            await api.verification.start(
                account, SendRequest(country_code="91", mobile_number=number, flow_type="SMS")
            )
            while time.monotonic() - started < 10:
                entries = await api.outbox.entries("C-WAKE", limit=10)
                if any(e["destination"] == f"+91{number}" for e in entries):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"send {attempt} not sent within 10 s")
            assert time.monotonic() - started < 10
    finally:
        await api.stop()
        await worker.stop()
