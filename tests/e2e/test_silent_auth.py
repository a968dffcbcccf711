"""flowType=SAUTH end to end: the API, a CAMARA operator peer over loopback HTTP, the SMS fallback."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
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
    settings: dict[str, Any] | None = None,
    **operator: Any,
) -> Container:
    built = make_settings(
        **(settings or {}),
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
        },
    )
    return build_container(built, clock=clock)


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
    data: dict[str, Any] = body["data"]
    return data


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


def assert_no_secrets(view: dict[str, Any], auth_url: str) -> None:
    """The status view names the session, never its state, verifier, code or tokens."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(auth_url).query).items()}
    shown = json.dumps(view)
    for secret in (query["state"], query["code_challenge"]):
        assert secret not in shown
    assert not {"state_hash", "code_verifier", "stateHash", "codeVerifier", "token"} & set(
        view["silentAuth"]
    )


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
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43  # base64url of a SHA-256

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
    silent = view["silentAuth"]
    assert silent["operator"] == "acme-mobile"
    assert silent["state"] == "verified"
    assert silent["reason"] is None
    assert silent["fallbackAt"] is None
    assert silent["deviceReturnedAt"] is not None
    assert silent["endedAt"] is not None
    assert_no_secrets(view, offer["authUrl"])
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
    silent = (await status(mc, verification_id))["silentAuth"]
    assert silent["state"] == "mismatch"
    assert silent["reason"] == "the operator reports a different number on this device"
    assert silent["fallback"] == "SMS"
    assert silent["fallbackAt"] == silent["endedAt"] is not None
    assert (await mc.validate(verification_id, code)).json()["responseCode"] == 200
    view = await status(mc, verification_id)
    assert view["status"] == "VERIFIED"
    assert view["silentAuth"]["state"] == "mismatch"  # verified by the SMS code, not silently
    assert_no_secrets(view, data["silentAuth"]["authUrl"])


async def test_an_operator_failing_at_the_token_endpoint_falls_back_to_sms_at_once(
    mc: MessageCentralClient, peer: CamaraPeer
) -> None:
    peer.device_number = E164
    data = await send_sauth(mc)
    async with httpx.AsyncClient() as device:
        location = (await device.get(data["silentAuth"]["authUrl"])).headers["location"]
    peer.outage = 503  # the operator goes down between the authorize step and the exchange
    answer = await mc.http.get(location)
    assert answer.status_code == 200
    assert answer.json()["data"]["verified"] is False
    code = await sms_arrives(mc)
    silent = (await status(mc, data["verificationId"]))["silentAuth"]
    assert silent["state"] == "operator_error"
    assert "503" in silent["reason"], silent
    assert silent["fallbackAt"] is not None
    assert (await mc.validate(data["verificationId"], code)).json()["responseCode"] == 200


async def test_an_operator_unreachable_at_send_time_gets_the_sms_at_once(
    mc: MessageCentralClient, peer: CamaraPeer
) -> None:
    await peer.stop()  # discovery fails: no URL to offer
    data = await send_sauth(mc)
    assert data["silentAuth"] == {
        "available": False,
        "reason": "the operator's silent authentication is unavailable",
        "fallback": "SMS",
    }
    code = await sms_arrives(mc)
    assert (await mc.validate(data["verificationId"], code)).json()["responseCode"] == 200
    assert (await status(mc, data["verificationId"]))["silentAuth"] is None  # no session


async def test_a_replayed_or_unknown_state_is_refused_and_changes_nothing(
    mc: MessageCentralClient, peer: CamaraPeer
) -> None:
    peer.device_number = "+919999999999"
    data = await send_sauth(mc)
    async with httpx.AsyncClient() as device:
        location = (await device.get(data["silentAuth"]["authUrl"])).headers["location"]
    assert (await mc.http.get(location)).json()["data"]["verified"] is False
    await sms_arrives(mc)
    # a replay, even once the operator would now confirm the number, is refused
    peer.device_number = E164
    replayed = await mc.http.get(location)
    assert replayed.status_code == 400
    assert "already used" in replayed.json()["errorMessage"]
    forged = await mc.http.get(REDIRECT, params={"code": "x", "state": "not-a-state"})
    assert forged.status_code == 400
    assert "unknown, expired or was already used" in forged.json()["errorMessage"]
    missing = await mc.http.get(REDIRECT, params={"code": "x"})
    assert missing.status_code == 400
    assert missing.json()["errorMessage"] == "state is required"
    assert (await status(mc, data["verificationId"]))["status"] == "PENDING"
    assert len([r for r in peer.requests if r.path == "/token"]) == 1


async def test_a_device_that_never_calls_back_gets_its_sms_when_the_window_ends(
    mc: MessageCentralClient, peer: CamaraPeer, clock: FrozenClock
) -> None:
    data = await send_sauth(mc)
    verification_id = data["verificationId"]
    pending = await validate_without_code(mc, verification_id)
    assert pending["responseCode"] == 702
    assert "has not completed yet" in pending["errorMessage"]
    waiting = (await status(mc, verification_id))["silentAuth"]
    assert waiting["state"] == "pending"
    assert waiting["deviceReturnedAt"] is None
    due = datetime.fromisoformat(waiting["fallbackAt"])
    assert abs(due - (clock.now() + timedelta(seconds=WINDOW_S))) < timedelta(seconds=1)
    clock.advance(WINDOW_S - 5)
    # another number's OTP going out proves the dispatcher ran after the clock moved
    other = await mc.send_otp(mobileNumber="9876543219")
    assert other.json()["responseCode"] == 200
    await sms_arrives(mc, "+919876543219")
    assert all(e["destination"] != E164 for e in await mc.outbox())
    assert [s["status"] for s in (await status(mc, verification_id))["sends"]] == ["QUEUED"]
    clock.advance(6)
    code = await sms_arrives(mc)
    late = (await status(mc, verification_id))["silentAuth"]
    assert late["state"] == "timed_out"
    assert late["reason"] == f"no answer from the device within {WINDOW_S} s"
    assert late["fallbackAt"] == waiting["fallbackAt"]
    assert (await mc.validate(verification_id, code)).json()["responseCode"] == 200


async def test_a_device_off_mobile_data_is_refused_by_the_operator_and_gets_the_sms(
    mc: MessageCentralClient, peer: CamaraPeer
) -> None:
    peer.device_number = None  # on Wi-Fi: prompt=none cannot identify the subscriber
    data = await send_sauth(mc)
    answer = await open_on_mobile_data(mc, data["silentAuth"]["authUrl"])
    assert answer.json()["data"]["verified"] is False
    assert "device not on the mobile network" in peer.refusals
    assert not [r for r in peer.requests if r.path == "/token"]
    await sms_arrives(mc)


async def test_a_number_no_operator_covers_gets_the_sms_with_the_reason(
    mc: MessageCentralClient, peer: CamaraPeer
) -> None:
    response = await mc.send_otp(
        countryCode="44", mobileNumber="7911123456", flowType="SAUTH", fallback="SMS"
    )
    data = response.json()["data"]
    assert data["silentAuth"] == {
        "available": False,
        "reason": "no operator offers silent authentication for this number",
        "fallback": "SMS",
    }
    code = await sms_arrives(mc, "+447911123456")
    assert (await mc.validate(data["verificationId"], code)).json()["responseCode"] == 200
    assert peer.requests == []


async def test_a_client_assertion_signed_with_another_key_is_refused_by_the_operator(
    make_settings: SettingsFactory,
    clock: FrozenClock,
    peer: CamaraPeer,
    tmp_path: Path,
    start_api: Any,
) -> None:
    forged = write_key(tmp_path / "forged.pem", ec.generate_private_key(ec.SECP256R1()))
    mc = await start_api(silent_container(make_settings, clock, peer, forged))
    peer.device_number = E164  # the right phone: only the client authentication is wrong
    data = await send_sauth(mc)
    answer = await open_on_mobile_data(mc, data["silentAuth"]["authUrl"])
    assert answer.json()["data"]["verified"] is False
    assert peer.refusals == ["client assertion rejected: InvalidSignatureError"]
    assert peer.verified_bodies == []
    await sms_arrives(mc)


async def test_a_hashed_number_with_an_rsa_key_completes_the_verification(
    make_settings: SettingsFactory, clock: FrozenClock, tmp_path: Path, start_api: Any
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    operator = CamaraPeer(
        client_id=CLIENT_ID,
        public_key=key.public_key(),
        redirect_uris=(REDIRECT,),
        device_number=E164,
    )
    await operator.start()
    try:
        key_file = write_key(tmp_path / "rsa.pem", key)
        mc = await start_api(
            silent_container(make_settings, clock, operator, key_file, hashed=True, key_id="k1")
        )
        data = await send_sauth(mc)
        answer = await open_on_mobile_data(mc, data["silentAuth"]["authUrl"])
        assert answer.json()["data"]["verified"] is True, operator.refusals
        digest = hashlib.sha256(E164.encode()).hexdigest()
        assert operator.verified_bodies == [{"hashedPhoneNumber": digest}]
        body = await validate_without_code(mc, data["verificationId"])
        assert body["data"]["verificationStatus"] == "VERIFICATION_COMPLETED"
    finally:
        await operator.stop()


async def test_validate_without_a_code_on_an_sms_verification_still_wants_the_code(
    mc: MessageCentralClient,
) -> None:
    sent = (await mc.send_otp(mobileNumber=NUMBER)).json()["data"]
    body = await validate_without_code(mc, sent["verificationId"])
    assert body["responseCode"] == 400
    assert body["errorMessage"] == "code is required"


async def test_a_code_validated_verification_is_not_reported_as_silently_completed(
    mc: MessageCentralClient, peer: CamaraPeer, clock: FrozenClock
) -> None:
    data = await send_sauth(mc)
    clock.advance(WINDOW_S + 1)
    code = await sms_arrives(mc)
    assert (await mc.validate(data["verificationId"], code)).json()["responseCode"] == 200
    assert (await validate_without_code(mc, data["verificationId"]))["responseCode"] == 703
    # the device arriving late finds the verification ended: nothing changes, no SMS resent
    peer.device_number = E164
    answer = await open_on_mobile_data(mc, data["silentAuth"]["authUrl"])
    assert answer.json()["data"]["verified"] is False
    assert len(await mc.outbox()) == 1


async def test_a_silently_completed_verification_refunds_its_held_sms(
    make_settings: SettingsFactory,
    clock: FrozenClock,
    peer: CamaraPeer,
    client_key: ec.EllipticCurvePrivateKey,
    tmp_path: Path,
    start_api: Any,
) -> None:
    key_file = write_key(tmp_path / "client.pem", client_key)
    billing = {"billing": {"enabled": True, "currency": "USD", "minor_units": 4}}
    built = silent_container(make_settings, clock, peer, key_file, billing)
    mc = await start_api(built)
    await built.billing.import_prices(["channel,prefix,message_type,price", "SMS,*,*,0.0100"])
    await built.billing.top_up("C-1", "1.0000", reference="test")
    peer.device_number = E164
    data = await send_sauth(mc)
    held = (await mc.http.get("/api/v1/account/balance", headers=mc.headers())).json()["data"]
    assert held["held"] == "0.0100"  # the SMS is paid for while it waits
    answer = await open_on_mobile_data(mc, data["silentAuth"]["authUrl"])
    assert answer.json()["data"]["verified"] is True
    after = (await mc.http.get("/api/v1/account/balance", headers=mc.headers())).json()["data"]
    assert (after["balance"], after["held"]) == ("1.0000", "0.0000")


async def test_of_concurrent_callbacks_with_one_state_exactly_one_is_taken(
    mc: MessageCentralClient, peer: CamaraPeer
) -> None:
    peer.device_number = E164
    data = await send_sauth(mc)
    async with httpx.AsyncClient() as device:
        location = (await device.get(data["silentAuth"]["authUrl"])).headers["location"]
    answers = await asyncio.gather(*(mc.http.get(location) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [400] * 7
    assert len([r for r in peer.requests if r.path == "/token"]) == 1
    assert (await status(mc, data["verificationId"]))["status"] == "VERIFIED"
