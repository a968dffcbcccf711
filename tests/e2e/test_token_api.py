"""The token API and the authToken check, as the spec and real clients use them."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import httpx
import jwt
import pytest
from tests.conftest import TEST_KEY
from tests.e2e.conftest import PASSWORD

from switchboard.bootstrap import Container
from switchboard.clock import FrozenClock
from switchboard.testing.client import MessageCentralClient

TOKEN_PATH = "/auth/v1/authentication/token"


def key(password: str) -> str:
    return base64.b64encode(password.encode()).decode()


async def test_spec_curl_returns_an_hs512_token_whose_subject_is_the_customer(
    client: httpx.AsyncClient, customer: str
) -> None:
    response = await client.get(
        f"{TOKEN_PATH}?customerId={customer}&key={key(PASSWORD)}&scope=NEW&country=91"
        "&email=dev@example.com",
        headers={"accept": "*/*"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == 200
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "HS512"
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sub"] == customer
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize(
    "params",
    [
        {"customerId": "C-33432A5F49F7404", "key": key("wrong password")},
        {"customerId": "C-UNKNOWN", "key": key(PASSWORD)},
        {"customerId": "C-33432A5F49F7404", "key": "%%%not-base64%%%"},
        {"customerId": "C-33432A5F49F7404", "key": key(PASSWORD), "email": "other@example.com"},
        {"customerId": "C-33432A5F49F7404"},
        {"key": key(PASSWORD)},
    ],
    ids=["wrong-key", "unknown-customer", "bad-base64", "wrong-email", "no-key", "no-customer"],
)
async def test_every_credential_failure_gets_the_same_501_body(
    client: httpx.AsyncClient, customer: str, params: dict[str, str]
) -> None:
    response = await client.get(TOKEN_PATH, params=params)
    body = response.json()
    assert response.status_code == 401
    assert body["status"] == 501
    assert body["responseCode"] == 501
    assert body["message"] == "INVALID_CUSTOMER_ID"
    assert body["errorMessage"] == "customerId, key or email is invalid"
    assert "token" not in body


async def test_disabled_customer_gets_no_token_and_its_tokens_stop_working(
    client: httpx.AsyncClient, container: Container, mc: MessageCentralClient, customer: str
) -> None:
    await container.accounts.update(customer, enabled=False)
    response = await client.get(TOKEN_PATH, params={"customerId": customer, "key": key(PASSWORD)})
    assert response.json()["responseCode"] == 501
    send = await mc.send_otp(mobileNumber="9876543210")
    assert send.json()["responseCode"] == 501


async def test_repeated_failures_lock_the_customer_until_the_lock_expires(
    client: httpx.AsyncClient, customer: str, clock: FrozenClock
) -> None:
    for _ in range(10):
        failed = await client.get(TOKEN_PATH, params={"customerId": customer, "key": key("nope")})
        assert failed.json()["responseCode"] == 501
    locked = await client.get(TOKEN_PATH, params={"customerId": customer, "key": key(PASSWORD)})
    assert locked.json()["responseCode"] == 501
    assert "locked" in locked.json()["errorMessage"]
    assert int(locked.headers["Retry-After"]) > 800
    clock.advance(15 * 60 + 1)
    unlocked = await client.get(TOKEN_PATH, params={"customerId": customer, "key": key(PASSWORD)})
    assert unlocked.json()["status"] == 200


async def test_a_success_resets_the_failure_count(client: httpx.AsyncClient, customer: str) -> None:
    for _ in range(9):
        await client.get(TOKEN_PATH, params={"customerId": customer, "key": key("nope")})
    ok = await client.get(TOKEN_PATH, params={"customerId": customer, "key": key(PASSWORD)})
    assert ok.json()["status"] == 200
    for _ in range(9):
        await client.get(TOKEN_PATH, params={"customerId": customer, "key": key("nope")})
    still_ok = await client.get(TOKEN_PATH, params={"customerId": customer, "key": key(PASSWORD)})
    assert still_ok.json()["status"] == 200


async def test_unknown_scope_is_rejected_with_a_reason(
    client: httpx.AsyncClient, customer: str
) -> None:
    response = await client.get(
        TOKEN_PATH, params={"customerId": customer, "key": key(PASSWORD), "scope": "OLD"}
    )
    assert response.json()["responseCode"] == 400
    assert "scope" in response.json()["errorMessage"]


def _forge(claims: dict[str, object], secret: str = TEST_KEY, alg: str = "HS512") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


async def test_forged_expired_and_revoked_tokens_are_refused_alike(
    client: httpx.AsyncClient,
    container: Container,
    mc: MessageCentralClient,
    customer: str,
    clock: FrozenClock,
) -> None:
    good = jwt.decode(mc.token or "", options={"verify_signature": False})
    now = int(clock.now().timestamp())
    none_token = (
        base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        + "."
        + base64.urlsafe_b64encode(json.dumps(good).encode()).rstrip(b"=").decode()
        + "."
    )
    forged = {
        "missing": "",
        "garbage": "not-a-jwt",
        "alg-none": none_token,
        "hs256-same-key": _forge(good, alg="HS256"),
        "other-key": _forge(good, secret="x" * 64),
        "expired": _forge({**good, "iat": now - 7200, "exp": now - 3600}),
        "no-exp": _forge({k: v for k, v in good.items() if k != "exp"}),
        "wrong-audience": _forge({**good, "aud": "someone-else"}),
        "issued-in-future": _forge({**good, "iat": now + 3600, "exp": now + 7200}),
        "unknown-subject": _forge({**good, "sub": "C-NOBODY"}),
    }
    bodies = set()
    for name, token in forged.items():
        response = await client.post(
            "/verification/v3/send",
            params={"countryCode": "91", "mobileNumber": "9876543210", "flowType": "SMS"},
            headers={"authToken": token} if token else {},
        )
        assert response.json()["responseCode"] == 501, name
        bodies.add(response.text)
    assert len(bodies) == 1
    # revocation: a new password bumps the token version
    assert (await mc.send_otp(mobileNumber="9876543210")).json()["responseCode"] == 200
    await container.accounts.update(customer, password="a brand new password")
    revoked = await mc.send_otp(mobileNumber="9876543211")
    assert revoked.text in bodies
    # and a token past its lifetime stops working
    fresh = MessageCentralClient(client, customer, "a brand new password")
    await fresh.fetch_token()
    # used once: its verified claims are kept, and its times are still checked on every call
    assert (await fresh.send_otp(mobileNumber="9876543213")).json()["responseCode"] == 200
    clock.advance(timedelta(hours=2).total_seconds())
    assert (await fresh.send_otp(mobileNumber="9876543212")).text in bodies
