"""The operator's side from the command line: set and show a callback, rotate, list, replay."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from switchboard.callbacks.secrets import secret_id

CLI_TIMEOUT_S = 60


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "switchboard.toml"
    path.write_text(
        f'database_url = "sqlite:///{tmp_path / "switchboard.db"}"\n'
        f'token_signing_key = "{"k" * 64}"\n'
        f'otp_pepper = "{"p" * 64}"\n'
        '[logging]\nlevel = "WARNING"\n'
        '[webhooks]\nallow_networks = ["127.0.0.1/32"]\n'
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


def add_dead_delivery(config: Path, delivery_id: str) -> None:
    database = config.parent / "switchboard.db"
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO webhook_deliveries (id, account_id, event_type, url, payload, status, "
            "attempts, created_at, dead_at) VALUES (?, 'C-9', 'message.status', "
            "'http://127.0.0.1:9/hook', '{}', 'DEAD', 10, '2026-11-25 10:00:00', "
            "'2026-11-28 10:00:00')",
            (delivery_id,),
        )


def test_operator_sets_shows_rotates_and_replays_a_customers_callback(config: Path) -> None:
    run_json(config, "customers", "create", "--email", "ops@example.com", "--password",
             "long enough", "--customer-id", "C-9")  # fmt: skip

    updated = run_json(
        config, "customers", "update", "C-9", "--callback-url", "http://127.0.0.1:9/hook",
        "--callback-events", "verification",
    )  # fmt: skip
    shown = run_json(config, "customers", "show", "C-9")
    refused = run(config, "customers", "update", "C-9", "--callback-url", "http://10.1.2.3/")
    rotated = run_json(config, "callbacks", "rotate-secret", "C-9")
    add_dead_delivery(config, "msg_dead1")
    dead = run(config, "callbacks", "deliveries", "C-9", "--status", "DEAD")
    replayed = run_json(config, "callbacks", "replay", "C-9", "msg_dead1")
    unknown = run(config, "callbacks", "replay", "C-9", "msg_nothing")

    callback = updated["callback"]
    assert updated["callbackUrl"] == "http://127.0.0.1:9/hook"
    assert callback["url"] == "http://127.0.0.1:9/hook"
    assert callback["secret"].startswith("whsec_")
    assert callback["secretId"] == secret_id(callback["secret"])
    assert callback["events"] == ["verification"]
    assert shown["callback"]["secret"] == callback["secret"]
    assert refused.returncode == 1
    assert "callback URL refused" in refused.stderr
    assert rotated["previousSecret"] == callback["secret"]
    assert rotated["secret"] != callback["secret"]
    assert [json.loads(line)["id"] for line in dead.stdout.splitlines()] == ["msg_dead1"]
    assert (replayed["id"], replayed["status"], replayed["attempts"]) == ("msg_dead1", "PENDING", 0)
    assert replayed["replays"] == 1
    assert unknown.returncode == 1
    assert "no delivery msg_nothing" in unknown.stderr
