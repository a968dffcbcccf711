"""Secrets kept in the database (OAuth tokens of installed apps) are sealed with AES-256-GCM."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1"
_NONCE_BYTES = 12


class SealedValueError(Exception):
    """A sealed value that does not open: tampered with, moved to another row, or another key."""


def derive_key(material: bytes, purpose: str) -> bytes:
    """A 256-bit key for one purpose from longer key material (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        material
    )


class Vault:
    """`seal(value, context)` → `v1.<base64 nonce+ciphertext>`; `open` needs the same context.

    The context (e.g. `pipedrive:company:42:refresh_token`) is authenticated data: a sealed
    value copied into another row or column does not open there."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the vault key is 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, value: str, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), context.encode())
        return f"{_VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, context: str) -> str:
        version, _, body = sealed.partition(".")
        if version != _VERSION:
            raise SealedValueError("unknown sealed value format")
        try:
            raw = base64.urlsafe_b64decode(body.encode())
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError):
            raise SealedValueError(
                "the sealed value does not open with this key and context"
            ) from None
        return plain.decode()
