"""The vault seals database-kept secrets so that only the same key and context open them."""

from __future__ import annotations

import os

import pytest

from switchboard.vault import SealedValueError, Vault, derive_key


def test_a_sealed_value_opens_with_its_key_and_context_only() -> None:
    vault = Vault(derive_key(b"m" * 64, "switchboard data key"))
    sealed = vault.seal("access-token-123", "pipedrive:company:1:access_token")
    assert "access-token-123" not in sealed
    assert vault.open(sealed, "pipedrive:company:1:access_token") == "access-token-123"
    assert vault.seal("x", "c") != vault.seal("x", "c")  # a new nonce each time
    with pytest.raises(SealedValueError):
        vault.open(sealed, "pipedrive:company:2:access_token")
    with pytest.raises(SealedValueError):
        Vault(os.urandom(32)).open(sealed, "pipedrive:company:1:access_token")
    tampered = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(SealedValueError):
        vault.open(tampered, "pipedrive:company:1:access_token")
    with pytest.raises(SealedValueError):
        vault.open("v0." + sealed[3:], "pipedrive:company:1:access_token")


def test_keys_for_different_purposes_differ() -> None:
    assert derive_key(b"m" * 64, "a") != derive_key(b"m" * 64, "b")
