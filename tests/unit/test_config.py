"""Settings: TOML file, environment overrides, and errors that name the key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from switchboard.bootstrap import build_container, resolve_secrets
from switchboard.config import load_settings
from switchboard.errors import ConfigurationError


def test_defaults_need_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWITCHBOARD_CONFIG", raising=False)
    settings = load_settings()
    assert settings.database_url == "sqlite:///./switchboard.db"
    assert settings.otp.default_length == 4
    assert settings.otp.default_timeout_s == 60
    assert settings.server.port == 8080


def test_file_then_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "switchboard.toml"
    config.write_text(
        'database_url = "sqlite:///x.db"\n[otp]\ndefault_length = 6\nbrand = "Acme"\n'
        '[[connectors]]\nname = "carrier-a"\ntype = "smpp"\nhost = "127.0.0.1"\nport = 2775\n'
    )
    monkeypatch.setenv("SWITCHBOARD_OTP__DEFAULT_LENGTH", "8")
    monkeypatch.setenv("SWITCHBOARD_SERVER__PORT", "9000")
    settings = load_settings(config)
    assert settings.database_url == "sqlite:///x.db"
    assert settings.otp.default_length == 8
    assert settings.otp.brand == "Acme"
    assert settings.server.port == 9000
    assert settings.connectors[0].options() == {"host": "127.0.0.1", "port": 2775}


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[otp]\ndefault_length = 12\n", "otp.default_length"),
        ('database_url = "mysql://x"\n', "database_url"),
        ("[server]\nport = 0\n", "server.port"),
        ("[otp]\nno_such_key = 1\n", "otp.no_such_key"),
        ('token_signing_key = "short"\n', "token_signing_key"),
        ('[sandbox]\ntest_numbers = { "+911" = "12" }\n', "sandbox.test_numbers"),
    ],
)
def test_invalid_configuration_names_the_key(tmp_path: Path, toml: str, key: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    with pytest.raises(ConfigurationError, match=key.replace(".", r"\.")):
        load_settings(config)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_unknown_connector_type_and_route_target_are_refused(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        connectors=[{"name": "x", "type": "carrier-pigeon"}],
    )
    with pytest.raises(ConfigurationError, match=r"connectors\.x\.type"):
        build_container(settings)
    settings = load_settings(
        None,
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        routes=[{"channel": "SMS", "connectors": ["ghost"]}],
    )
    with pytest.raises(ConfigurationError, match="unknown connector 'ghost'"):
        build_container(settings)


def test_sqlite_secrets_are_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = load_settings(None, database_url=f"sqlite:///{tmp_path / 'sb.db'}")
    first = resolve_secrets(settings)
    second = resolve_secrets(settings)
    assert first == second
    assert len(first.token_signing_key) >= 64
    assert first.token_signing_key != first.otp_pepper
    key_file = tmp_path / "sb.db.keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert set(json.loads(key_file.read_text())) == {"token_signing_key", "otp_pepper", "data_key"}


def test_postgres_requires_configured_secrets() -> None:
    settings = load_settings(None, database_url="postgresql://postgres@127.0.0.1:5432/test")
    with pytest.raises(
        ConfigurationError, match="token_signing_key, otp_pepper must be configured"
    ):
        resolve_secrets(settings)
