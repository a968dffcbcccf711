"""Silent authentication's settings, operator keys and prefixes, and its secrets kept from logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from switchboard.config import SilentAuthOperator, load_settings
from switchboard.errors import ConfigurationError
from switchboard.observability import redact_query, redact_text
from switchboard.silentauth.operators import Operator, OperatorDirectory


def operator_options(key_file: Path, **changes: object) -> dict[str, object]:
    return {
        "name": "op",
        "prefixes": ["91"],
        "discovery_url": "https://op.example/.well-known/openid-configuration",
        "api_url": "https://op.example/number-verification/v2/",
        "client_id": "c1",
        "private_key_file": str(key_file),
        **changes,
    }


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_operators_need_the_redirect_url_they_were_registered_with(key_file: Path) -> None:
    with pytest.raises(ConfigurationError, match="redirect_url is required"):
        load_settings(None, silent_auth={"operators": [operator_options(key_file)]})


def test_prefixes_must_be_digits(key_file: Path) -> None:
    with pytest.raises(ConfigurationError, match="prefixes are digits"):
        load_settings(
            None,
            silent_auth={
                "redirect_url": "https://sb.example/verification/v3/silent/callback",
                "operators": [operator_options(key_file, prefixes=["IN"])],
            },
        )


def test_a_missing_or_weak_key_stops_start_up(key_file: Path, tmp_path: Path) -> None:
    missing = SilentAuthOperator.model_validate(operator_options(tmp_path / "absent.pem"))
    with pytest.raises(ConfigurationError, match="private_key_file"):
        Operator.from_settings(missing)
    weak = tmp_path / "p384.pem"
    weak.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigurationError, match="EC P-256"):
        Operator.from_settings(SilentAuthOperator.model_validate(operator_options(weak)))
    ok = Operator.from_settings(SilentAuthOperator.model_validate(operator_options(key_file)))
    assert (ok.algorithm, ok.api_url) == ("ES256", "https://op.example/number-verification/v2")


def test_the_longest_prefix_picks_the_operator(key_file: Path) -> None:
    country = Operator.from_settings(
        SilentAuthOperator.model_validate(operator_options(key_file, name="country"))
    )
    network = Operator.from_settings(
        SilentAuthOperator.model_validate(
            operator_options(key_file, name="network", prefixes=["+9198"])
        )
    )
    directory = OperatorDirectory([country, network])
    assert directory.for_number("+919876543210") is network
    assert directory.for_number("+917700000000") is country
    assert directory.for_number("+447911123456") is None
    assert directory.named("country") is country


def test_the_callbacks_state_and_code_never_reach_a_log_line() -> None:
    assert redact_query("code=abc&state=s3cr3t&error=x") == "code=***&state=***&error=x"
    assert "s3cr3t" not in redact_text("GET /verification/v3/silent/callback?state=s3cr3t")
