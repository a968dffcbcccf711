"""OTPs over WhatsApp, RCS and e-mail through the HTTP API, against local peers that speak the
providers' wire formats, with their signed status webhooks coming back over real HTTP."""

from __future__ import annotations

import asyncio
import email
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.conftest import SettingsFactory, open_client
from tests.e2e.conftest import PASSWORD, eventually

from switchboard.api.app import create_app
from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.testing.bounces import delivery_status_notification
from switchboard.testing.client import MessageCentralClient
from switchboard.testing.loopback import LoopbackServer
from switchboard.testing.rbm_peer import RbmPeer
from switchboard.testing.whatsapp_peer import WhatsAppPeer

CLIENT_EMAIL = "switchboard@project.iam.gserviceaccount.com"
USER = "9876543210"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "service-account.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "client_email": CLIENT_EMAIL,
                "private_key": key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode(),
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    whatsapp = WhatsAppPeer()
    rbm = RbmPeer(client_email=CLIENT_EMAIL, public_key_pem=public)
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    await whatsapp.start()
    await rbm.start()
    smtp.start()
    try:
        yield {"whatsapp": whatsapp, "rbm": rbm, "mailbox": mailbox, "smtp": smtp,
               "key_file": key_file}  # fmt: skip
    finally:
        smtp.stop()
        await rbm.stop()
        await whatsapp.stop()


@pytest.fixture
async def served(
    make_settings: SettingsFactory, clock: FrozenClock, peers: dict[str, Any]
) -> AsyncIterator[tuple[Container, str, MessageCentralClient]]:
    whatsapp: WhatsAppPeer = peers["whatsapp"]
    rbm: RbmPeer = peers["rbm"]
    settings = make_settings(
        connectors=[
            {"name": "wa", "type": "whatsapp", "base_url": whatsapp.url,
             "phone_number_id": whatsapp.phone_number_id,
             "access_token": whatsapp.access_token, "app_secret": whatsapp.app_secret,
             "verify_token": "verify-me", "timeout_s": 3},
            {"name": "rbm", "type": "rcs", "base_url": rbm.url, "token_url": rbm.token_url,
             "agent_id": rbm.agent_id, "service_account_file": str(peers["key_file"]),
             "client_token": rbm.client_token, "timeout_s": 3},
            {"name": "mail", "type": "smtp", "host": "127.0.0.1", "port": peers["smtp"].port,
             "security": "none", "from_address": "Acme <no-reply@example.com>"},
        ],
        routes=[
            {"channel": "WHATSAPP", "connectors": ["wa"]},
            {"channel": "RCS", "connectors": ["rbm"]},
            {"channel": "EMAIL", "connectors": ["mail"]},
            {"channel": "SMS", "connectors": ["sandbox"]},
        ],
    )  # fmt: skip
    built = build_container(settings, clock=clock)
    await built.start(run_workers=True)
    await built.accounts.create_customer(
        email="dev@example.com", password=PASSWORD, customer_id="C-1", name="Acme"
    )
    server = LoopbackServer(create_app(built, manage_lifecycle=False))
    await server.start()
    http = await open_client(built)
    api = MessageCentralClient(http, "C-1", PASSWORD)
    await api.fetch_token()
    try:
        yield built, server.url, api
    finally:
        await http.aclose()
        await server.stop()
        await built.stop()


async def sends(mc: MessageCentralClient, verification_id: str) -> list[dict[str, Any]]:
    view = await mc.http.get(f"/api/v1/verifications/{verification_id}", headers=mc.headers())
    result: list[dict[str, Any]] = view.json()["data"]["sends"]
    return result


async def test_whatsapp_otp_goes_as_an_authentication_template_and_its_webhook_settles_it(
    served: tuple[Container, str, MessageCentralClient], peers: dict[str, Any]
) -> None:
    _, base_url, mc = served
    whatsapp: WhatsAppPeer = peers["whatsapp"]
    handshake = await whatsapp.verify_subscription(
        f"{base_url}/webhooks/whatsapp", "verify-me", "42"
    )
    assert (handshake.status_code, handshake.text) == (200, "42")
    refused = await whatsapp.verify_subscription(f"{base_url}/webhooks/whatsapp", "wrong", "42")
    assert refused.status_code == 403

    sent = (await mc.send_otp(mobileNumber=USER, flowType="WHATSAPP", otpLength="6")).json()
    verification_id = sent["data"]["verificationId"]

    async def accepted() -> bool:
        return len(whatsapp.accepted) == 1

    await eventually(accepted)
    [message] = whatsapp.accepted
    assert message.type == "template"
    components = message.payload["template"]["components"]
    body_code = components[0]["parameters"][0]["text"]
    button_code = components[1]["parameters"][0]["text"]
    assert body_code == button_code
    assert len(body_code) == 6
    hook = f"{base_url}/webhooks/whatsapp"
    tampered = await whatsapp.emit(hook, whatsapp.status_body(message.wamid, "delivered"),
                                   signature="sha256=" + "0" * 64)  # fmt: skip
    assert tampered.status_code == 401
    assert (await whatsapp.emit_status(hook, message.wamid, "read")).status_code == 200
    assert (await whatsapp.emit_status(hook, message.wamid, "delivered")).status_code == 200
    assert (await whatsapp.emit_status(hook, message.wamid, "delivered")).status_code == 200
    [send] = await sends(mc, verification_id)
    assert send["deliveryStatus"] == "DELIVRD"
    assert (await mc.validate(verification_id, body_code)).json()["responseCode"] == 200


async def test_whatsapp_undeliverable_falls_back_to_sms(
    served: tuple[Container, str, MessageCentralClient], peers: dict[str, Any]
) -> None:
    _, base_url, mc = served
    whatsapp: WhatsAppPeer = peers["whatsapp"]
    sent = (await mc.send_otp(mobileNumber=USER, flowType="WHATSAPP", fallback="SMS")).json()
    verification_id = sent["data"]["verificationId"]

    async def accepted() -> bool:
        return len(whatsapp.accepted) == 1

    await eventually(accepted)
    wamid = whatsapp.accepted[0].wamid
    response = await whatsapp.emit_status(
        f"{base_url}/webhooks/whatsapp", wamid, "failed", error_code=131026
    )
    assert response.status_code == 200

    async def sms_sent() -> bool:
        return any(e["channel"] == "SMS" for e in await mc.outbox())

    await eventually(sms_sent)
    first, second = await sends(mc, verification_id)
    assert (first["channel"], first["deliveryStatus"], first["errorCode"]) == (
        "WHATSAPP", "UNDELIV", "131026",
    )  # fmt: skip
    assert second["channel"] == "SMS"


async def test_rcs_not_capable_falls_back_and_delivered_events_settle(
    served: tuple[Container, str, MessageCentralClient], peers: dict[str, Any]
) -> None:
    _, base_url, mc = served
    rbm: RbmPeer = peers["rbm"]
    handshake, secret = await rbm.emit_handshake(f"{base_url}/webhooks/rcs")
    assert (handshake.status_code, handshake.text) == (200, secret)
    rbm.not_rcs_capable.add(f"+91{USER}")
    sent = (await mc.send_otp(mobileNumber=USER, flowType="RCS", fallback="SMS")).json()

    async def sms_sent() -> bool:
        return any(e["channel"] == "SMS" for e in await mc.outbox())

    await eventually(sms_sent)
    first, _ = await sends(mc, sent["data"]["verificationId"])
    assert first["status"] == "FAILED"

    rbm.not_rcs_capable.clear()
    other = (await mc.send_otp(mobileNumber="9876543211", flowType="RCS")).json()

    async def accepted() -> bool:
        return len(rbm.messages) == 1

    await eventually(accepted)
    [message_id] = rbm.messages
    event = rbm.user_event(message_id, "DELIVERED")
    assert (await rbm.emit(f"{base_url}/webhooks/rcs", event)).status_code == 200
    [send] = await sends(mc, other["data"]["verificationId"])
    assert send["deliveryStatus"] == "DELIVRD"


async def _rcs_step_submitted(mc: MessageCentralClient, rbm: RbmPeer) -> tuple[str, str]:
    """An RCS OTP with an SMS fallback, accepted by RBM; its verification and RBM message ids."""
    sent = (await mc.send_otp(mobileNumber=USER, flowType="RCS", fallback="SMS")).json()
    verification_id = sent["data"]["verificationId"]

    async def submitted() -> bool:
        return [s["status"] for s in await sends(mc, verification_id)][:1] == ["SUBMITTED"]

    await eventually(submitted)
    [message_id] = rbm.messages
    return verification_id, message_id


async def test_an_undelivered_rcs_message_is_revoked_before_its_sms_fallback(
    served: tuple[Container, str, MessageCentralClient],
    peers: dict[str, Any],
    clock: FrozenClock,
) -> None:
    built, _, mc = served
    rbm: RbmPeer = peers["rbm"]
    verification_id, message_id = await _rcs_step_submitted(mc, rbm)
    clock.advance(built.settings.otp.fallback_step_timeout_s + 1)  # the RCS step's time is up
    built.dispatcher.wake()

    async def sms_sent() -> bool:
        return any(e["channel"] == "SMS" for e in await mc.outbox())

    await eventually(sms_sent)
    assert rbm.messages[message_id].revoked
    rcs, sms = await sends(mc, verification_id)
    assert (rcs["channel"], rcs["deliveryStatus"], rcs["errorCode"]) == (
        "RCS",
        "EXPIRED",
        "REVOKED",
    )
    assert sms["channel"] == "SMS"


async def test_an_rcs_message_delivered_meanwhile_cancels_the_sms_fallback(
    served: tuple[Container, str, MessageCentralClient],
    peers: dict[str, Any],
    clock: FrozenClock,
) -> None:
    built, _, mc = served
    rbm: RbmPeer = peers["rbm"]
    verification_id, message_id = await _rcs_step_submitted(mc, rbm)
    rbm.user_event(message_id, "DELIVERED")  # on the handset; its webhook is still on its way
    clock.advance(built.settings.otp.fallback_step_timeout_s + 1)
    built.dispatcher.wake()

    async def settled() -> bool:
        return [s["status"] for s in await sends(mc, verification_id)][1:] == ["CANCELLED"]

    await eventually(settled)
    assert not rbm.messages[message_id].revoked
    assert not any(e["channel"] == "SMS" for e in await mc.outbox())


async def test_email_otp_arrives_with_plain_text_and_html(
    served: tuple[Container, str, MessageCentralClient], peers: dict[str, Any]
) -> None:
    _, _, mc = served
    mailbox: Mailbox = peers["mailbox"]
    sent = await mc.send_otp(mobileNumber=USER, flowType="EMAIL", email="user@example.com")
    verification_id = sent.json()["data"]["verificationId"]

    async def mailed() -> bool:
        return len(mailbox.messages) == 1

    await eventually(mailed)
    [mail] = mailbox.messages
    assert mail["To"] == "user@example.com"
    assert "Acme" in mail["Subject"]
    parts = {p.get_content_type(): p.get_payload(decode=True) for p in mail.walk()}
    plain = bytes(parts["text/plain"]).decode()
    html = bytes(parts["text/html"]).decode()
    code = plain.split()[0]
    assert code in html
    assert (await mc.validate(verification_id, code)).json()["responseCode"] == 200


async def test_a_bounce_piped_to_the_cli_marks_the_email_undelivered(
    served: tuple[Container, str, MessageCentralClient],
    peers: dict[str, Any],
    tmp_path: Path,
) -> None:
    built, _, mc = served
    mailbox: Mailbox = peers["mailbox"]
    sent = await mc.send_otp(mobileNumber=USER, flowType="EMAIL", email="user@example.com")
    verification_id = sent.json()["data"]["verificationId"]

    async def mailed() -> bool:
        return len(mailbox.messages) == 1

    await eventually(mailed)
    headers = mailbox.messages[0].as_bytes().split(b"\n\n", 1)[0].replace(b"\n", b"\r\n")
    bounce = delivery_status_notification(headers, recipient="user@example.com")
    settings = built.settings
    config = tmp_path / "bounces.toml"
    config.write_text(
        f'database_url = "{settings.database_url}"\n'
        f'token_signing_key = "{settings.token_signing_key}"\n'
        f'otp_pepper = "{settings.otp_pepper}"\n[logging]\nlevel = "ERROR"\n'
        '[[connectors]]\nname = "mail"\ntype = "smtp"\nhost = "127.0.0.1"\n'
        f'port = {peers["smtp"].port}\nsecurity = "none"\n'
        'from_address = "Acme <no-reply@example.com>"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "SWITCHBOARD_CONFIG"}

    async def pipe(mail: bytes) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "switchboard", "bounces", "receive", "--config", str(config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(mail), 60)
        return int(process.returncode or 0), out.decode()

    assert await pipe(b"Subject: hello\r\n\r\nnot a bounce\r\n") == (
        0,
        "not a bounce of ours: ignored\n",
    )
    code, out = await pipe(bounce)
    assert (code, out.startswith("stored: UNDELIV")) == (0, True)

    async def undelivered() -> bool:
        return [s["deliveryStatus"] for s in await sends(mc, verification_id)] == ["UNDELIV"]

    await eventually(undelivered)
