"""`switchboard operators create|list`: operator accounts for the console's admin view."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI_TIMEOUT_S = 60


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "switchboard.toml"
    path.write_text(
        f'database_url = "sqlite:///{tmp_path / "switchboard.db"}"\n'
        f'token_signing_key = "{"k" * 64}"\n'
        f'otp_pepper = "{"p" * 64}"\n'
        '[logging]\nlevel = "WARNING"\n'
    )
    return path


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip


def test_an_operator_is_created_and_listed_without_its_password(config: Path) -> None:
    created = run(config, "operators", "create", "--email", "ops@example.com",
                  "--password", "operator password 1")  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["email"] == "ops@example.com"
    listed = run(config, "operators", "list")
    assert listed.returncode == 0, listed.stderr
    assert "ops@example.com" in listed.stdout
    assert "operator password 1" not in listed.stdout + listed.stderr
    assert "argon2" not in listed.stdout


def test_a_short_operator_password_is_refused(config: Path) -> None:
    refused = run(config, "operators", "create", "--email", "ops@example.com",
                  "--password", "short")  # fmt: skip
    assert refused.returncode != 0
    assert "12 characters" in refused.stdout + refused.stderr
