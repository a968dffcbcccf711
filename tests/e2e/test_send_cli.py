"""`switchboard send otp|sms` and `switchboard verify` as scripts run them: a process, env, JSON."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import xlsxwriter
from tests.e2e.served import E164, NUMBER, Serve, Served, serve_fixture  # noqa: F401 (the fixture)

from switchboard.client import AsyncClient, Credentials

CLI_TIMEOUT_S = 60


async def run(served: Served | None, *args: str, **env: str) -> tuple[int, Any]:
    """The CLI's exit code and its JSON output."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    if served is not None:
        environment |= {"SWITCHBOARD_URL": served.url, "SWITCHBOARD_CUSTOMER_ID": "C-1",
                        "SWITCHBOARD_PASSWORD": "correct horse battery"}  # fmt: skip
    environment |= env
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchboard", *args, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    try:
        return process.returncode, json.loads(out)
    except ValueError:
        raise AssertionError(f"not JSON: {out!r} {err!r}") from None


async def test_send_otp_then_verify_with_a_wrong_and_a_right_code(serve: Serve) -> None:
    served = await serve()
    status, sent = await run(served, "send", "otp", "--country-code", "91", "--mobile", NUMBER)
    assert status == 0, sent
    assert sent["mobile_number"] == NUMBER
    async with AsyncClient(
        served.url, Credentials(customer_id="C-1", password="correct horse battery")
    ) as api:
        code = await served.code_sent_to(api, E164)
    status, wrong = await run(
        served, "verify", sent["verification_id"], "0000" if code != "0000" else "1111"
    )
    assert (status, wrong["responseCode"]) == (4, 702), wrong
    status, right = await run(served, "verify", sent["verification_id"], code)
    assert (status, right["verification_status"]) == (0, "VERIFICATION_COMPLETED")


async def test_send_sms_to_one_number_and_an_xlsx(serve: Serve, tmp_path: Path) -> None:
    served = await serve()
    common = ("--sender", "ACMEIN", "--type", "TRANSACTIONAL")
    status, single = await run(
        served, "send", "sms", "Your order shipped", "--country-code", "91", "--mobile", NUMBER,
        *common,
    )  # fmt: skip
    assert status == 0, single
    assert single["message_id"]
    book_path = tmp_path / "recipients.xlsx"
    book = xlsxwriter.Workbook(str(book_path))
    sheet = book.add_worksheet()
    for row, values in enumerate([("Country", "Mobile", "var1"), (91, 9816111113, "Asha")]):
        sheet.write_row(row, 0, values)
    book.close()
    status, campaign = await run(
        served, "send", "sms", "Hello ##var1##", "--file", str(book_path), *common
    )
    assert (status, campaign["accepted"]) == (0, 1), campaign


async def test_a_token_from_the_environment_is_used_as_is(serve: Serve) -> None:
    served = await serve()
    async with served.client() as api:
        token = await api.token()
    status, sent = await run(
        None, "send", "otp", "--country-code", "91", "--mobile", NUMBER, "--url", served.url,
        SWITCHBOARD_TOKEN=token,
    )  # fmt: skip
    assert status == 0, sent


async def test_exit_codes_follow_the_response_code_class(serve: Serve) -> None:
    served = await serve()
    otp = ("send", "otp", "--country-code", "91", "--mobile", NUMBER)
    assert (await run(served, *otp))[0] == 0
    status, cooldown = await run(served, *otp)
    assert (status, cooldown["responseCode"]) == (5, 506)
    status, bad = await run(served, "send", "otp", "--country-code", "91", "--mobile", "12")
    assert (status, bad["responseCode"]) == (2, 400)
    status, refused = await run(served, *otp, SWITCHBOARD_PASSWORD="wrong")
    assert (status, refused["responseCode"]) == (3, 501)
    status, unknown = await run(served, "verify", "42", "1234")
    assert (status, unknown["responseCode"]) == (4, 505)


async def test_no_url_no_credentials_or_no_server_say_so() -> None:
    status, missing = await run(None, "verify", "1", "1234")
    assert status == 2
    assert "SWITCHBOARD_URL" in missing["errorMessage"]
    status, anonymous = await run(None, "verify", "1", "1234", "--url", "http://127.0.0.1:9")
    assert status == 2
    assert "SWITCHBOARD_TOKEN" in anonymous["errorMessage"]
    status, down = await run(
        None, "verify", "1", "1234", "--url", "http://127.0.0.1:9", SWITCHBOARD_TOKEN="t"
    )
    assert (status, down["responseCode"]) == (1, None)
