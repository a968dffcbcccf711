"""The console in a real browser: Playwright driving Debian's chromium against a served app."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import xlsxwriter
from tests.conftest import TEST_KEY, TEST_PEPPER
from tests.e2e.conftest import eventually

from switchboard.api.app import create_app
from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.config import load_settings
from switchboard.testing.callback_receiver import Receiver, answer
from switchboard.testing.loopback import LoopbackServer

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed"),
    pytest.mark.timeout(180),
]
# As the machine notes say for root in a closed network: no sandbox, no background traffic.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# The committed screenshots in docs/console are refreshed by a run with
# SWITCHBOARD_SCREENSHOTS=docs (a plain run writes them to its temporary directory instead,
# leaving the work tree clean).
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
PASSWORD = "correct horse battery"
OPERATOR_PASSWORD = "operator password 1"
ROWS = 5000


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Container, str, Receiver]]:
    receiver = Receiver(answer(200))
    await receiver.start()
    settings = load_settings(
        None,
        database_url=f"sqlite:///{tmp_path}/console.db",
        token_signing_key=TEST_KEY,
        otp_pepper=TEST_PEPPER,
        worker={"poll_interval_s": 0.05, "lease_s": 5},
        server={"shutdown_grace_s": 2, "access_log": False},
        webhooks={"allow_networks": ["127.0.0.1/32"], "require_https": False,
                  "allowed_ports": [], "poll_interval_s": 0.1},
        billing={"enabled": True, "default_price": "0.01"},
    )  # fmt: skip
    container = build_container(settings, clock=FrozenClock(datetime.now(UTC)))
    await container.start(run_workers=True)
    await container.accounts.create_customer(
        email="dev@example.com", password=PASSWORD, customer_id="C-ACME", name="Acme"
    )
    await container.accounts.create_customer(
        email="other@example.com", password=PASSWORD, customer_id="C-OTHER"
    )
    await container.billing.top_up("C-ACME", "1000")
    await container.callbacks.configure("C-ACME", receiver.url())
    assert container.console is not None
    await container.console.operators.create("ops@example.com", OPERATOR_PASSWORD)
    server = LoopbackServer(create_app(container, manage_lifecycle=False))
    await server.start()
    try:
        yield container, server.url, receiver
    finally:
        await server.stop()
        await container.stop()
        await receiver.stop()


def _campaign_file(path: Path) -> Path:
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ["countryCode", "mobileNumber", "var1"])
    for row in range(1, ROWS + 1):
        sheet.write_row(row, 0, ["91", f"98{row:08d}", f"friend {row}"])
    book.close()
    return path


async def _sign_in(page: object, base: str, email: str, *, admin: bool = False) -> None:
    assert isinstance(page, playwright_api.Page)
    await page.goto(f"{base}/console/{'admin/' if admin else ''}login")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(OPERATOR_PASSWORD if admin else PASSWORD)
    await page.get_by_role("button", name="Sign in").click()


async def test_a_customer_and_an_operator_work_through_the_console(
    served: tuple[Container, str, Receiver], tmp_path: Path
) -> None:
    container, base, receiver = served
    expect = playwright_api.expect
    shots = DOCS_SHOTS if os.environ.get("SWITCHBOARD_SCREENSHOTS") == "docs" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    async with playwright_api.async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1200, "height": 900})
            page = await context.new_page()
            await _sign_in(page, base, "dev@example.com")
            await expect(page.locator("#customer-id")).to_contain_text("C-ACME")
            await page.screenshot(path=str(shots / "home.png"), full_page=True)

            # an OTP, read back in the sandbox outbox (the only page that shows a code)
            await page.goto(f"{base}/console/send")
            await page.get_by_label("Mobile number").first.fill("9876543210")
            await page.get_by_role("button", name="Send code").click()
            await expect(page.locator("#verification-id")).to_have_text(re.compile(r"\d+"))
            await page.goto(f"{base}/console/outbox")
            await expect(page.locator("#outbox .text").first).to_contain_text(re.compile(r"\d{4}"))
            await page.screenshot(path=str(shots / "outbox.png"), full_page=True)

            await page.goto(f"{base}/console/dashboard")
            sent_before = int(await page.locator("#total-sent").inner_text())

            # a 5,000-row campaign; the progress bar climbs to 100 %
            await page.goto(f"{base}/console/send")
            await page.get_by_label("File (.xlsx)").set_input_files(
                str(_campaign_file(tmp_path / "campaign.xlsx"))
            )
            await page.evaluate(
                """() => {
                    window.seen = [];
                    const bar = document.getElementById("progress-bar");
                    new MutationObserver(() => window.seen.push(Number(bar.value)))
                        .observe(bar, {attributes: true});
                }"""
            )
            await page.get_by_role("button", name="Upload and send").click()
            bar = page.locator("#progress-bar")
            await expect(bar).to_be_visible()
            await expect(bar).to_have_attribute("value", "100", timeout=90_000)
            await expect(page.locator("#progress-text")).to_have_text("100 %")
            seen = await page.evaluate("window.seen")
            assert any(0 < value < 100 for value in seen), seen  # it moved, not just jumped
            assert seen == sorted(seen)  # and never went back
            await page.screenshot(path=str(shots / "campaign-upload.png"), full_page=True)
            await page.get_by_role("link", name=re.compile("Open the campaign")).click()
            await expect(page.locator("#campaign-status")).to_have_text("ACCEPTED")
            campaign_url = page.url
            await page.screenshot(path=str(shots / "campaign.png"), full_page=True)

            # receipts move the chart
            async def delivered() -> bool:
                assert container.console is not None
                board = await container.console.statistics.dashboard("C-ACME")
                return sum(d["delivered"] for d in board.by_day.values()) >= ROWS

            await eventually(delivered, timeout_s=90)
            await page.goto(f"{base}/console/dashboard")
            assert int(await page.locator("#total-sent").inner_text()) >= sent_before + ROWS
            assert int(await page.locator("#total-delivered").inner_text()) >= ROWS
            today = page.locator("rect.bar-delivered").last
            assert int(await today.get_attribute("data-value") or 0) >= ROWS
            await page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

            # a callback delivery replayed from the log
            await receiver.wait_for_requests(1, timeout_s=30)
            await page.goto(f"{base}/console/callbacks?status=DELIVERED")
            first = page.locator("#deliveries tbody tr").first
            delivery_id = await first.get_attribute("data-id")
            await first.get_by_role("button", name=re.compile("Replay")).click()
            await expect(page.get_by_role("status")).to_contain_text(f"{delivery_id} queued again")
            replays = page.locator(f"#deliveries tr[data-id='{delivery_id}'] .replays")
            await expect(replays).to_have_text("1")
            await page.screenshot(path=str(shots / "callbacks.png"))

            # another customer cannot open the campaign by its URL
            other = await (await browser.new_context()).new_page()
            await _sign_in(other, base, "other@example.com")
            response = await other.goto(campaign_url)
            assert response is not None
            assert response.status == 404
            await expect(other.get_by_role("alert")).to_contain_text("no campaign")

            # an operator tops the customer up
            ops = await (await browser.new_context()).new_page()
            await _sign_in(ops, base, "ops@example.com", admin=True)
            await expect(ops.locator("#customers")).to_contain_text("C-ACME")
            await ops.screenshot(path=str(shots / "admin.png"), full_page=True)
            await ops.get_by_role("link", name="C-ACME").click()
            before = await container.billing.balance("C-ACME")
            await ops.get_by_label("Amount").fill("250")
            await ops.get_by_label("Reference").fill("invoice 42")
            await ops.get_by_role("button", name="Top up").click()
            await expect(ops.get_by_role("status")).to_contain_text("Done: topup")
            after = await container.billing.balance("C-ACME")
            assert after.wallet.balance - before.wallet.balance == (
                container.billing.currency.to_minor("250")
            )
            await ops.screenshot(path=str(shots / "admin-customer.png"), full_page=True)
        finally:
            await browser.close()
