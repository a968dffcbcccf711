"""The CAMARA operator peer refuses what an operator refuses, so the SAUTH tests prove something."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from switchboard.config import SilentAuthOperator
from switchboard.silentauth.number_verification import NumberVerificationClient
from switchboard.silentauth.oidc import ASSERTION_TYPE, OidcClient, OperatorError
from switchboard.silentauth.operators import Operator
from switchboard.testing.camara_peer import CamaraPeer

CLIENT_ID = "client-1"
VERIFIER = "v" * 64
REDIRECT = "https://switchboard.example/verification/v3/silent/callback"
NUMBER = "+34666111333"


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def peer(key: ec.EllipticCurvePrivateKey) -> AsyncIterator[CamaraPeer]:
    served = CamaraPeer(
        client_id=CLIENT_ID,
        public_key=key.public_key(),
        redirect_uris=(REDIRECT,),
        device_number=NUMBER,
    )
    await served.start()
    yield served
    await served.stop()


@pytest.fixture
def operator(key: ec.EllipticCurvePrivateKey, peer: CamaraPeer, tmp_path: Path) -> Operator:
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Operator.from_settings(
        SilentAuthOperator(
            name="peer",
            prefixes=["34"],
            discovery_url=peer.discovery_url,
            api_url=peer.api_url,
            client_id=CLIENT_ID,
            private_key_file=pem,
        )
    )


async def authorization_code(oidc: OidcClient, operator: Operator) -> str:
    discovery = await oidc.discover(operator)
    url = oidc.authorize_url(
        operator, discovery, redirect_uri=REDIRECT, state="s1", code_verifier=VERIFIER
    )
    async with httpx.AsyncClient() as device:
        location = (await device.get(url)).headers["location"]
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["s1"]
    return query["code"][0]


def assertion(key: ec.EllipticCurvePrivateKey, **claims: Any) -> str:
    now = int(time.time())
    values = {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": "", "jti": "j1", "iat": now,
              "exp": now + 60, **claims}  # fmt: skip
    return jwt.encode(values, key, algorithm="ES256")


async def token_answer(peer: CamaraPeer, code: str, client_assertion: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            peer.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": VERIFIER,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client_assertion,
            },
        )


async def test_the_client_checks_a_number_and_each_token_works_once(
    peer: CamaraPeer, operator: Operator
) -> None:
    oidc = OidcClient(timeout_s=5, cache_s=60)
    numbers = NumberVerificationClient(timeout_s=5)
    code = await authorization_code(oidc, operator)
    token = await oidc.exchange_code(
        operator, code, redirect_uri=REDIRECT, code_verifier=VERIFIER, now=datetime.now(UTC)
    )
    assert await numbers.verify(operator, token, NUMBER) is True
    with pytest.raises(OperatorError, match="HTTP 401"):
        await numbers.verify(operator, token, NUMBER)  # single-use token
    with pytest.raises(OperatorError, match="invalid_grant"):  # single-use code
        await oidc.exchange_code(
            operator, code, redirect_uri=REDIRECT, code_verifier=VERIFIER, now=datetime.now(UTC)
        )
    code = await authorization_code(oidc, operator)
    token = await oidc.exchange_code(
        operator, code, redirect_uri=REDIRECT, code_verifier=VERIFIER, now=datetime.now(UTC)
    )
    assert await numbers.verify(operator, token, "+34666111334") is False


async def test_the_peer_refuses_replayed_misaddressed_and_long_lived_assertions(
    peer: CamaraPeer, operator: Operator, key: ec.EllipticCurvePrivateKey
) -> None:
    oidc = OidcClient(timeout_s=5, cache_s=60)
    code = await authorization_code(oidc, operator)
    wrong_audience = await token_answer(peer, code, assertion(key, aud="https://elsewhere"))
    assert wrong_audience.status_code == 401
    assert peer.refusals[-1] == "client assertion rejected: InvalidAudienceError"
    long_lived = assertion(key, aud=peer.token_endpoint, exp=int(time.time()) + 3600)
    assert (await token_answer(peer, code, long_lived)).status_code == 401
    assert peer.refusals[-1] == "client assertion lives longer than 5 minutes"
    expired = assertion(key, aud=peer.token_endpoint, exp=int(time.time()) - 120)
    assert (await token_answer(peer, code, expired)).status_code == 401
    assert peer.refusals[-1] == "client assertion rejected: ExpiredSignatureError"
    other_client = assertion(key, aud=peer.token_endpoint, iss="client-2", sub="client-2")
    assert (await token_answer(peer, code, other_client)).status_code == 401
    good = assertion(key, aud=peer.token_endpoint, jti="once")
    assert (await token_answer(peer, code, good)).status_code == 200
    code = await authorization_code(oidc, operator)
    replayed = await token_answer(peer, code, good)
    assert replayed.status_code == 401
    assert peer.refusals[-1] == "client assertion replayed (jti seen)"


async def test_the_peer_verify_refuses_unknown_properties_and_two_numbers(
    peer: CamaraPeer, operator: Operator
) -> None:
    oidc = OidcClient(timeout_s=5, cache_s=60)
    for body in ({"phoneNumber": NUMBER, "extra": 1},
                 {"phoneNumber": NUMBER, "hashedPhoneNumber": "0" * 64}):  # fmt: skip
        code = await authorization_code(oidc, operator)
        token = await oidc.exchange_code(
            operator, code, redirect_uri=REDIRECT, code_verifier=VERIFIER, now=datetime.now(UTC)
        )
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{peer.api_url}/verify",
                json=body,
                headers={"Authorization": f"Bearer {token}", "x-correlator": "c-1"},
            )
        assert answer.status_code == 400
        assert answer.json()["code"] == "INVALID_ARGUMENT"
        assert answer.headers["x-correlator"] == "c-1"


async def test_a_code_is_worthless_without_its_pkce_verifier(
    peer: CamaraPeer, operator: Operator
) -> None:
    oidc = OidcClient(timeout_s=5, cache_s=60)
    code = await authorization_code(oidc, operator)
    with pytest.raises(OperatorError, match="invalid_grant"):
        await oidc.exchange_code(
            operator, code, redirect_uri=REDIRECT, code_verifier="w" * 64, now=datetime.now(UTC)
        )
    assert peer.refusals == ["PKCE verifier mismatch"]
