"""The operator's billing from the command line: price tables, overrides, top-ups, wallets."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CLI_TIMEOUT_S = 60
TABLE = (
    "channel,prefix,message_type,price,min_volume\n"
    "SMS,91,OTP,0.002,0\n"
    "SMS,91,*,0.003,0\n"
    "WHATSAPP,*,*,0.008,10000\n"
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "switchboard.toml"
    path.write_text(
        f'database_url = "sqlite:///{tmp_path / "switchboard.db"}"\n'
        f'token_signing_key = "{"k" * 64}"\n'
        f'otp_pepper = "{"p" * 64}"\n'
        '[logging]\nlevel = "WARNING"\n'
        '[billing]\ncurrency = "EUR"\nminor_units = 4\n'
    )
    return path


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def run_json(config: Path, *args: str) -> Any:
    result = run(config, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def run_csv(config: Path, *args: str) -> list[list[str]]:
    result = run(config, *args)
    assert result.returncode == 0, result.stderr
    return list(csv.reader(io.StringIO(result.stdout)))


def test_operator_imports_lists_and_overrides_prices(config: Path, tmp_path: Path) -> None:
    run_json(config, "customers", "create", "--email", "ops@example.com", "--password",
             "long enough", "--customer-id", "C-9")  # fmt: skip
    table = tmp_path / "prices.csv"
    table.write_text(TABLE)
    bad = tmp_path / "bad.csv"
    bad.write_text("channel,prefix,message_type,price\nSMS,91,OTP,0.002\nFAX,1,*,1\nSMS,1,*,x\n")

    imported = run_json(config, "prices", "import", str(table))
    listed = run_csv(config, "prices", "list")
    refused = run(config, "prices", "import", str(bad))
    override = run_json(config, "prices", "set", "SMS", "+91", "otp", "0.0015", "--customer", "C-9")
    own = run_csv(config, "prices", "list", "--customer", "C-9")
    again = run_csv(config, "prices", "list")
    removed = run_json(config, "prices", "remove", "SMS", "91", "OTP", "--customer", "C-9")
    gone = run(config, "prices", "remove", "SMS", "91", "OTP", "--customer", "C-9")
    stranger = run(config, "prices", "set", "SMS", "91", "OTP", "1", "--customer", "C-404")

    assert imported == {"imported": 3, "customerId": None, "merged": False}
    assert listed == [
        ["channel", "prefix", "message_type", "price", "min_volume"],
        ["SMS", "91", "*", "0.0030", "0"],
        ["SMS", "91", "OTP", "0.0020", "0"],
        ["WHATSAPP", "*", "*", "0.0080", "10000"],
    ]
    assert refused.returncode == 1
    assert "line 3: channel 'FAX'" in refused.stderr
    assert "line 4: 'x' is not a decimal amount" in refused.stderr
    assert again == listed  # nothing of the bad file was imported
    assert override["price"] == "0.0015"
    assert override["customerId"] == "C-9"
    assert own[1:] == [["SMS", "91", "OTP", "0.0015", "0"]]
    assert removed == {"removed": True}
    assert gone.returncode == 1
    assert stranger.returncode == 1
    assert "no customer C-404" in stranger.stderr


def test_operator_tops_up_and_sets_a_credit_limit_and_a_low_balance_threshold(
    config: Path,
) -> None:
    run_json(config, "customers", "create", "--email", "ops@example.com", "--password",
             "long enough", "--customer-id", "C-9")  # fmt: skip

    topped = run_json(config, "customers", "topup", "C-9", "12.5", "--reference", "INV-1")
    wallet = run_json(
        config, "customers", "wallet", "C-9", "--credit-limit", "5", "--low-balance", "1"
    )
    too_precise = run(config, "customers", "topup", "C-9", "0.00001")
    negative = subprocess.run(
        [sys.executable, "-m", "switchboard", "customers", "topup", "--config", str(config),
         "C-9", "--", "-3"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip
    stranger = run(config, "customers", "topup", "C-404", "1")

    assert topped["balance"] == "12.5000"
    assert topped["currency"] == "EUR"
    assert topped["ledgerSum"] == "12.5000"
    assert topped["entryId"] >= 1
    assert topped["billingEnabled"] is False
    assert wallet["available"] == "17.5000"
    assert wallet["creditLimit"] == "5.0000"
    assert wallet["lowBalanceThreshold"] == "1.0000"
    assert too_precise.returncode == 1
    assert "more than 4 decimal places" in too_precise.stderr
    assert negative.returncode == 1
    assert "'-3' is negative" in negative.stderr
    assert stranger.returncode == 1
    assert "no customer C-404" in stranger.stderr
