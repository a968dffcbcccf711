"""EmailDriver against a real aiosmtpd server on loopback: plain, STARTTLS, TLS, AUTH, errors."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from switchboard.channels.base import (
    DeliveryReport,
    InboundMessage,
    OutboundMessage,
    SendError,
    SendErrorKind,
)
from switchboard.channels.email import EmailDriver, EmailOptions
from switchboard.clock import FrozenClock
from switchboard.domain.messages import Channel, MessageType

USERNAME, PASSWORD = "relay-user", "relay-password-1"


class RecordingSink:
    def __init__(self) -> None:
        self.reports: list[DeliveryReport] = []
        self.inbound: list[InboundMessage] = []

    async def on_report(self, report: DeliveryReport) -> None:
        self.reports.append(report)

    async def on_inbound(self, message: InboundMessage) -> None:
        self.inbound.append(message)


@dataclass
class Relay:
    """An aiosmtpd handler that keeps what it accepted and refuses scripted recipients."""

    accepted: list[Any] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 Ok: queued"
    data_delay_s: float = 0.0

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.data_delay_s:
            await asyncio.sleep(self.data_delay_s)
        if self.data_reply.startswith("250"):
            self.accepted.append(envelope)
        return self.data_reply

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USERNAME.encode(),
            PASSWORD.encode(),
        ):
            self.logins.append(USERNAME)
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, made here so nothing is fetched or committed."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "switchboard-test-relay")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "relay.pem", directory / "relay.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_file, key_file)


def free_port() -> int:
    # aiosmtpd's Controller cannot bind port 0 (its readiness probe needs the number).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def relay() -> Relay:
    return Relay()


@pytest.fixture
def serve(relay: Relay) -> Iterator[Any]:
    controllers: list[Controller] = []

    def start(**smtp_parameters: Any) -> int:
        port = free_port()
        controller = Controller(
            relay,
            hostname="127.0.0.1",
            port=port,
            authenticator=relay.authenticate,
            ready_timeout=10,
            **smtp_parameters,
        )
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


def options(port: int, **overrides: Any) -> EmailOptions:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "Switchboard <no-reply@switchboard.test>",
        "timeout_s": 5,
    }
    values.update(overrides)
    return EmailOptions.model_validate(values)


def outbound(
    destination: str = "user@example.test",
    *,
    message_type: MessageType = MessageType.OTP,
    text: str = "482913 is your Switchboard code",
    html: str | None = None,
    subject: str | None = None,
) -> OutboundMessage:
    return OutboundMessage(
        id="01J8Z5N7K2QW3E4R5T6Y7U8I9O",
        account_id="acct-1",
        channel=Channel.EMAIL,
        message_type=message_type,
        destination=destination,
        sender=None,
        text=text,
        html=html,
        subject=subject,
    )


async def send(
    opts: EmailOptions, message: OutboundMessage, sink: RecordingSink | None = None
) -> str:
    driver = EmailDriver("mail-main", opts, clock=FrozenClock(datetime(2026, 5, 1, tzinfo=UTC)))
    await driver.start(sink or RecordingSink())
    try:
        [provider_id] = (await driver.send(message)).provider_ids
    finally:
        await driver.close()
    return provider_id


async def send_error(opts: EmailOptions, message: OutboundMessage) -> SendError:
    with pytest.raises(SendError) as caught:
        await send(opts, message)
    return caught.value


def parsed(envelope: Any) -> EmailMessage:
    mail = message_from_bytes(envelope.original_content, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    return mail


async def test_plain_submission_sends_text_and_html_alternatives_under_our_message_id(
    relay: Relay, serve: Any
) -> None:
    sink = RecordingSink()

    provider_id = await send(options(serve()), outbound(), sink)

    [envelope] = relay.accepted
    assert envelope.mail_from == "no-reply@switchboard.test"
    assert envelope.rcpt_tos == ["user@example.test"]
    mail = parsed(envelope)
    assert mail["Message-ID"] == provider_id == "<01J8Z5N7K2QW3E4R5T6Y7U8I9O@switchboard.test>"
    assert mail["X-Switchboard-Id"] == "01J8Z5N7K2QW3E4R5T6Y7U8I9O"
    assert mail["Subject"] == "Your verification code"
    assert mail["From"] == "Switchboard <no-reply@switchboard.test>"
    assert mail.get_content_type() == "multipart/alternative"
    plain, rich = mail.iter_parts()
    assert isinstance(plain, EmailMessage)
    assert isinstance(rich, EmailMessage)
    assert plain.get_content().strip() == "482913 is your Switchboard code"
    assert rich.get_content_type() == "text/html"
    assert "482913 is your Switchboard code" in rich.get_content()
    assert sink.reports == []  # SMTP has no receipt: acceptance is only SUBMITTED


async def test_generated_html_escapes_the_text(relay: Relay, serve: Any) -> None:
    await send(options(serve()), outbound(text="Hi <script>alert(1)</script> & bye\nline 2"))

    _, rich = parsed(relay.accepted[0]).iter_parts()
    assert isinstance(rich, EmailMessage)
    content = rich.get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; bye<br>" in content
    assert "<script>" not in content


async def test_the_caller_s_subject_and_html_are_used_as_given(relay: Relay, serve: Any) -> None:
    message = outbound(
        message_type=MessageType.TRANSACTIONAL,
        text="Your order shipped",
        html="<p>Your order <b>shipped</b></p>",
        subject="Order #1042 — shipped",
    )

    await send(options(serve()), message)

    mail = parsed(relay.accepted[0])
    assert mail["Subject"] == "Order #1042 — shipped"
    _, rich = mail.iter_parts()
    assert isinstance(rich, EmailMessage)
    assert rich.get_content().strip() == "<p>Your order <b>shipped</b></p>"


async def test_starttls_with_auth_against_a_self_signed_relay(
    relay: Relay, serve: Any, certificate: Certificate
) -> None:
    port = serve(tls_context=certificate.server_context(), require_starttls=True)
    opts = options(
        port,
        security="starttls",
        username=USERNAME,
        password=PASSWORD,
        ca_file=certificate.cert_file,
    )

    await send(opts, outbound())

    assert relay.logins == [USERNAME]
    assert len(relay.accepted) == 1


async def test_implicit_tls_against_a_self_signed_relay(
    relay: Relay, serve: Any, certificate: Certificate
) -> None:
    port = serve(ssl_context=certificate.server_context())

    await send(options(port, security="tls", ca_file=certificate.cert_file), outbound())

    assert len(relay.accepted) == 1


async def test_an_untrusted_certificate_sends_nothing(
    relay: Relay, serve: Any, certificate: Certificate
) -> None:
    port = serve(tls_context=certificate.server_context(), require_starttls=True)

    error = await send_error(options(port, security="starttls"), outbound())

    assert error.kind is SendErrorKind.TRANSIENT
    assert relay.accepted == []


async def test_a_rejected_login_is_permanent_and_the_driver_steps_aside(
    serve: Any, certificate: Certificate
) -> None:
    port = serve(tls_context=certificate.server_context(), require_starttls=True)
    opts = options(
        port,
        security="starttls",
        username=USERNAME,
        password="wrong",
        ca_file=certificate.cert_file,
    )
    clock = FrozenClock()
    driver = EmailDriver("mail-main", opts, clock=clock)
    await driver.start(RecordingSink())
    try:
        with pytest.raises(SendError) as caught:
            await driver.send(outbound())
        assert caught.value.kind is SendErrorKind.PERMANENT
        assert caught.value.provider_code == "535"
        assert not driver.is_available()
        clock.advance(61)
        assert driver.is_available()
    finally:
        await driver.close()


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("550 5.1.1 <nobody@example.test>: Recipient address rejected", SendErrorKind.PERMANENT),
        ("451 4.7.1 Greylisted, try again later", SendErrorKind.TRANSIENT),
    ],
)
async def test_recipient_replies_map_by_their_first_digit(
    relay: Relay, serve: Any, reply: str, kind: SendErrorKind
) -> None:
    relay.rcpt_replies["nobody@example.test"] = reply

    error = await send_error(options(serve()), outbound("nobody@example.test"))

    assert error.kind is kind
    assert error.provider_code == reply[:3]
    assert (error.retry_after_s is not None) is (kind is SendErrorKind.TRANSIENT)
    assert relay.accepted == []


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("554 5.7.1 Message rejected as spam", SendErrorKind.PERMANENT),
        ("452 4.3.1 Insufficient system storage", SendErrorKind.TRANSIENT),
    ],
)
async def test_replies_to_the_message_body_map_by_their_first_digit(
    relay: Relay, serve: Any, reply: str, kind: SendErrorKind
) -> None:
    relay.data_reply = reply

    error = await send_error(options(serve()), outbound())

    assert (error.kind, error.provider_code) == (kind, reply[:3])


async def test_no_reply_after_the_body_is_ambiguous(relay: Relay, serve: Any) -> None:
    relay.data_delay_s = 2.0

    error = await send_error(options(serve(), timeout_s=0.5), outbound())

    assert error.kind is SendErrorKind.AMBIGUOUS


async def test_an_unreachable_relay_is_transient() -> None:
    error = await send_error(options(free_port()), outbound())

    assert error.kind is SendErrorKind.TRANSIENT


@pytest.mark.parametrize(
    "destination",
    ["a@example.test, b@example.test", "Name <a@example.test>", "not-an-address"],
)
async def test_anything_but_one_bare_address_is_refused_before_connecting(destination: str) -> None:
    error = await send_error(options(free_port()), outbound(destination))

    assert error.kind is SendErrorKind.PERMANENT


async def test_a_subject_with_a_line_break_is_refused(relay: Relay, serve: Any) -> None:
    message = outbound(subject="Hello\r\nBcc: victim@example.test")

    error = await send_error(options(serve()), message)

    assert error.kind is SendErrorKind.PERMANENT
    assert relay.accepted == []


async def test_a_bounce_of_a_sent_mail_comes_back_as_its_provider_id(
    relay: Relay, serve: Any
) -> None:
    provider_id = await send(options(serve()), outbound())
    original_headers = relay.accepted[0].original_content.split(b"\r\n\r\n", 1)[0]
    dsn = (
        b"From: MAILER-DAEMON@example.test\r\n"
        b"To: no-reply@switchboard.test\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.test\r\n\r\n"
        b"Final-Recipient: rfc822; user@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
        b"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n" + original_headers + b"\r\n"
        b"--B--\r\n"
    )
    driver = EmailDriver("mail-main", options(1))
    sink = RecordingSink()
    await driver.start(sink)

    assert await driver.receive_bounce(dsn)

    [report] = sink.reports
    assert report.provider_id == provider_id
    assert report.error_code == "5.1.1"
