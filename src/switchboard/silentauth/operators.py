"""The configured operators, their signing keys, and which one serves a number."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from switchboard.config import SilentAuthOperator
from switchboard.errors import ConfigurationError

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator:
    name: str
    prefixes: tuple[str, ...]
    discovery_url: str
    api_url: str
    client_id: str
    key: SigningKey
    algorithm: str  # RS256 or ES256, from the key
    key_id: str | None
    hashed: bool
    purpose: str

    @classmethod
    def from_settings(cls, options: SilentAuthOperator) -> Operator:
        where = f"silent_auth.operators.{options.name}.private_key_file"
        try:
            key = load_pem_private_key(options.private_key_file.read_bytes(), password=None)
        except OSError as exc:
            raise ConfigurationError(f"invalid configuration: {where}: {exc.strerror}") from None
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"invalid configuration: {where}: not an unencrypted PEM private key"
            ) from None
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
            algorithm = "RS256"
        elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            algorithm = "ES256"
        else:
            raise ConfigurationError(
                f"invalid configuration: {where}: use an RSA key of 2048+ bits or an EC P-256 key"
            )
        return cls(
            name=options.name,
            prefixes=tuple(options.prefixes),
            discovery_url=options.discovery_url,
            api_url=options.api_url.rstrip("/"),
            client_id=options.client_id,
            key=key,
            algorithm=algorithm,
            key_id=options.key_id,
            hashed=options.hashed,
            purpose=options.purpose,
        )


class OperatorDirectory:
    """The operator for a number: the longest configured prefix of its E.164 digits wins."""

    def __init__(self, operators: Sequence[Operator]) -> None:
        self._by_name = {operator.name: operator for operator in operators}
        self._by_prefix = sorted(
            ((prefix, operator) for operator in operators for prefix in operator.prefixes),
            key=lambda item: -len(item[0]),
        )

    def for_number(self, e164: str) -> Operator | None:
        digits = e164.removeprefix("+")
        return next((op for prefix, op in self._by_prefix if digits.startswith(prefix)), None)

    def named(self, name: str) -> Operator | None:
        return self._by_name.get(name)
