"""The client's I/O-free parts: credentials, token expiry reading, renewal time, retry pauses."""

from __future__ import annotations

import base64
import json

import pytest

from switchboard.client import Credentials, Retries
from switchboard.client.protocol import TokenCache, token_expiry


def _jwt(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS512'})}.{part(claims)}.signature"


def test_the_password_goes_to_the_token_api_in_base64_and_a_key_as_given() -> None:
    by_password = Credentials(customer_id="C-1", password="pässword", email="a@b.co")
    assert by_password.token_params("91") == {
        "customerId": "C-1", "key": base64.b64encode("pässword".encode()).decode(),
        "scope": "NEW", "country": "91", "email": "a@b.co",
    }  # fmt: skip
    assert Credentials(customer_id="C-1", key="cGFzcw==").token_params("91")["key"] == "cGFzcw=="
    assert "pässword" not in repr(by_password)


@pytest.mark.parametrize("given", [{}, {"password": "p", "key": "k"}])
def test_credentials_need_exactly_one_secret(given: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="exactly one of password or key"):
        Credentials(customer_id="C-1", **given)


def test_expiry_is_read_without_the_key_and_garbage_reads_as_unknown() -> None:
    assert token_expiry(_jwt({"iat": 1000, "exp": 4600})) == (1000.0, 4600.0)
    assert token_expiry("not a jwt") == (None, None)
    assert token_expiry("a.%%%.c") == (None, None)
    assert token_expiry(_jwt({"exp": "soon"})) == (None, None)


def test_a_token_is_renewed_ahead_of_exp_but_never_before_half_its_life() -> None:
    cache = TokenCache(renew_before_s=60)
    cache.keep(_jwt({"iat": 1000, "exp": 4600}))
    assert cache.current(4539) is not None
    assert cache.current(4540) is None
    cache.keep(_jwt({"iat": 1000, "exp": 1080}))  # an 80 s token: renewed at 40 s
    assert cache.current(1039) is not None
    assert cache.current(1040) is None
    cache.keep("opaque-token")  # no exp to read: kept until the server refuses it
    assert cache.current(10**12) == "opaque-token"


def test_retry_pauses_double_up_to_a_cap_and_honour_a_bounded_retry_after() -> None:
    retries = Retries(backoff_s=0.25, max_backoff_s=2.0, max_retry_after_s=10.0)
    assert [retries.pause_s(n, None) for n in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert retries.pause_s(0, 3) == 3.0
    assert retries.pause_s(0, 3600) == 10.0
