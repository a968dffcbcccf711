"""flowType=SAUTH end to end: the API, a CAMARA operator peer over loopback HTTP, the SMS fallback."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tests.conftest import SettingsFactory
from tests.e2e.conftest import eventually

from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.testing.camara_peer import CamaraPeer
from switchboard.testing.client import MessageCentralClient

REDIRECT = "http://switchboard.test/verification/v3/silent/callback"
CLIENT_ID = "switchboard-acme"
NUMBER = "9876543210"
E164 = "+919876543210"
WINDOW_S = 25

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def write_key(path: Path, key: PrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture
def client_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def peer(client_key: ec.EllipticCurvePrivateKey) -> AsyncIterator[CamaraPeer]:
    operator = CamaraPeer(
        client_id=CLIENT_ID, public_key=client_key.public_key(), redirect_uris=(REDIRECT,)
    )
    await operator.start()
    yield operator
    await operator.stop()


def silent_container(
    make_settings: SettingsFactory,
    clock: FrozenClock,
    peer: CamaraPeer,
    key_file: Path,
    **operator: Any,
) -> Container:
    settings = make_settings(
        silent_auth={
            "timeout_s": WINDOW_S,
            "redirect_url": REDIRECT,
            "operators": [
                {
                    "name": "acme-mobile",
                    "prefixes": ["91"],
                    "discovery_url": peer.discovery_url,
                    "api_url": peer.api_url,
                    "client_id": CLIENT_ID,
                    "private_key_file": str(key_file),
                    **operator,
                }
            ],
        }
    )
    return build_container(settings, clock=clock)


@pytest.fixture
async def mc(
    make_settings: SettingsFactory,
    clock: FrozenClock,
    peer: CamaraPeer,
    client_key: ec.EllipticCurvePrivateKey,
    tmp_path: Path,
    start_api: Any,
) -> MessageCentralClient:
    key_file = write_key(tmp_path / "client.pem", client_key)
    api: MessageCentralClient = await start_api(
        silent_container(make_settings, clock, peer, key_file)
    )
    return api


async def send_sauth(mc: MessageCentralClient, **params: str) -> dict[str, Any]:
    response = await mc.send_otp(mobileNumber=NUMBER, flowType="SAUTH", **params)
    body: dict[str, Any] = response.json()
    assert body["responseCode"] == 200, body
    return body["data"]


async def open_on_mobile_data(mc: MessageCentralClient, auth_url: str) -> httpx.Response:
    """What the device does: GET the authorize URL (over real HTTP to the operator), then
    follow its redirect to Switchboard's callback."""
    async with httpx.AsyncClient() as device:
        at_operator = await device.get(auth_url)
    assert at_operator.status_code == 302, at_operator.text
    location = at_operator.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return await mc.http.get(location)


async def validate_without_code(mc: MessageCentralClient, verification_id: str) -> dict[str, Any]:
    response = await mc.http.get(
        "/verification/v3/validateOtp",
        params={"verificationId": verification_id},
        headers=mc.headers(),
    )
    body: dict[str, Any] = response.json()
    return body


async def status(mc: MessageCentralClient, verification_id: str) -> dict[str, Any]:
    view = await mc.http.get(f"/api/v1/verifications/{verification_id}", headers=mc.headers())
    data: dict[str, Any] = view.json()["data"]
    return data


async def sms_arrives(mc: MessageCentralClient, destination: str = E164) -> str:
    async def arrived() -> bool:
        return any(e["destination"] == destination for e in await mc.outbox())

    await eventually(arrived)
    return await mc.sandbox_code(destination)


async def test_a_matching_number_completes_the_verification_and_no_sms_is_sent(
    mc: MessageCentralClient, peer: CamaraPeer, clock: FrozenClock
) -> None:
    peer.device_number = E164
    data = await send_sauth(mc)
    for field in ("verificationId", "mobileNumber", "timeout", "smsCLI", "transactionId"):
        assert field in data
    offer = data["silentAuth"]
    assert offer["available"] is True
    assert offer["fallback"] == "SMS"
    assert offer["fallbackAfter"] == str(WINDOW_S)
    url = urlsplit(offer["authUrl"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{peer.url}/authorize"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["prompt"] == "none"
    assert query["response_type"] == "code"
    assert query["redirect_uri"] == REDIRECT
    assert query["client_id"] == CLIENT_ID
    assert set(query["scope"].split()) == {
        "openid",
        "dpv:FraudPreventionAndDetection",
        "number-verification:verify",
    }
    assert len(query["state"]) >= 40

    answer = await open_on_mobile_data(mc, offer["authUrl"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["verified"] is True
    assert peer.refusals == []
    assert peer.verified_bodies == [{"phoneNumber": E164}]

    verification_id = data["verificationId"]
    completed = await validate_without_code(mc, verification_id)
    assert completed["responseCode"] == 200, completed
    assert completed["data"]["verificationStatus"] == "VERIFICATION_COMPLETED"
    view = await status(mc, verification_id)
    assert view["status"] == "VERIFIED"
    # the held SMS is cancelled (never sent, never charged), even once its window has passed
    assert [s["status"] for s in view["sends"]] == ["CANCELLED"]
    clock.advance(WINDOW_S + 5)
    assert [s["status"] for s in (await status(mc, verification_id))["sends"]] == ["CANCELLED"]
    assert await mc.outbox() == []


async def test_a_different_number_falls_back_to_an_sms_whose_code_validates(
    mc: MessageCentralClient, peer: CamaraPeer
) -> None:
    peer.device_number = "+919999999999"  # another SIM: someone else's phone
    data = await send_sauth(mc)
    answer = await open_on_mobile_data(mc, data["silentAuth"]["authUrl"])
    assert answer.json()["data"] == {
        "verified": False,
        "verificationStatus": "VERIFICATION_PENDING",
        "fallback": "SMS",
    }
    code = await sms_arrives(mc)  # at once: the clock never reached the window's end
    verification_id = data["verificationId"]
    pending = await validate_without_code(mc, verification_id)
    assert pending["responseCode"] == 702
    assert "could not confirm the number" in pending["errorMessage"]
    assert (await mc.validate(verification_id, code)).json()["responseCode"] == 200
    assert (await status(mc, verification_id))["status"] == "VERIFIED"
