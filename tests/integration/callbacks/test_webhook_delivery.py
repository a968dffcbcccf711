"""Webhook delivery against real HTTP receivers on 127.0.0.1: signatures, status codes, limits.

The receiver (`switchboard.testing.callback_receiver`) is a plain asyncio HTTP/1.1 server with
a scripted handler per test, so a test can redirect, stall, trickle or stream without end;
every server is stopped at teardown.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from standardwebhooks import Webhook, WebhookVerificationError

from switchboard.callbacks.secrets import generate_secret
from switchboard.callbacks.sender import MAX_RESPONSE_BYTES, AttemptError, WebhookSender
from switchboard.callbacks.ssrf import AddressPolicy, StaticResolver
from switchboard.domain.callbacks import (
    Action,
    classify_response,
    delivery_payload,
    encode_payload,
)
from switchboard.testing.callback_receiver import (
    ReceivedRequest,
    Receiver,
    Receivers,
    answer,
    respond,
)

LOOPBACK_ONLY = ["127.0.0.1/32"]
BODY = encode_payload(
    delivery_payload(
        message_id="a2e87214-d18c-4a2e-b7f4-802c4465a9b9",
        status="DELIVRD",
        country_code="91",
        national_number="9999999999",
        submitted_at=datetime(2023, 11, 2, 13, 59, 18, tzinfo=UTC),
        done_at=datetime(2023, 11, 2, 13, 59, 22, tzinfo=UTC),
    )
)


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    started = Receivers()
    yield started
    await started.stop_all()


def loopback_sender(
    *, total_timeout_s: float = 15.0, max_concurrency_per_endpoint: int = 4
) -> WebhookSender:
    return WebhookSender(
        AddressPolicy(LOOPBACK_ONLY),
        total_timeout_s=total_timeout_s,
        max_concurrency_per_endpoint=max_concurrency_per_endpoint,
    )


async def test_delivery_verifies_with_the_reference_library_and_not_after_a_byte_changes(
    receivers: Receivers,
) -> None:
    receiver = await receivers.start(answer(200))
    secret = generate_secret()

    async with loopback_sender() as sender:
        attempt = await sender.send(
            receiver.url(), BODY, webhook_id="msg_2Yx", signing_secrets=[secret]
        )

    assert attempt.status_code == 200
    assert classify_response(attempt.status_code).action is Action.DELIVERED
    [request] = receiver.requests
    assert request.method == "POST"
    assert request.target == "/hook"
    assert request.body == BODY
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "Switchboard"
    assert request.headers["webhook-id"] == "msg_2Yx"
    assert Webhook(secret).verify(request.body, request.headers)["status"] == "DELIVRD"
    tampered = bytearray(request.body)
    tampered[-3] ^= 0x01
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(bytes(tampered), request.headers)


async def test_rotation_signs_with_both_secrets_and_either_verifies(receivers: Receivers) -> None:
    receiver = await receivers.start(answer(204))
    old, new = generate_secret(), generate_secret()

    async with loopback_sender() as sender:
        attempt = await sender.send(
            receiver.url(), BODY, webhook_id="m", signing_secrets=[old, new]
        )

    [request] = receiver.requests
    assert attempt.status_code == 204
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(request.body, request.headers)
    Webhook(new).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(request.body, request.headers)


async def test_server_error_is_retried_and_its_body_reported(receivers: Receivers) -> None:
    receiver = await receivers.start(answer(500, b"database\n  down"))

    async with loopback_sender() as sender:
        attempt = await sender.send(
            receiver.url(), BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    assert attempt.status_code == 500
    assert attempt.detail == "database down"
    assert classify_response(attempt.status_code).action is Action.RETRY


async def test_throttled_receiver_gets_its_retry_after(receivers: Receivers) -> None:
    receiver = await receivers.start(answer(429, headers=[("Retry-After", "90")]))

    async with loopback_sender() as sender:
        attempt = await sender.send(
            receiver.url(), BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    outcome = classify_response(attempt.status_code, attempt.retry_after)
    assert outcome.action is Action.RETRY
    assert outcome.retry_after == timedelta(seconds=90)


async def test_gone_disables_the_endpoint(receivers: Receivers) -> None:
    receiver = await receivers.start(answer(410))

    async with loopback_sender() as sender:
        attempt = await sender.send(
            receiver.url(), BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    assert attempt.status_code == 410
    assert classify_response(attempt.status_code).action is Action.DISABLE_ENDPOINT


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_is_a_failure_and_is_never_followed(
    status: int, receivers: Receivers
) -> None:
    target = await receivers.start(answer(200))
    redirector = await receivers.start(answer(status, headers=[("Location", target.url())]))

    async with loopback_sender() as sender:
        attempt = await sender.send(
            redirector.url(), BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    assert attempt.status_code == status
    assert attempt.detail == f"redirect to {target.url()} not followed"
    assert classify_response(attempt.status_code).action is Action.RETRY
    assert len(redirector.requests) == 1
    assert target.connections == 0
    assert target.requests == []


async def test_receiver_slower_than_the_total_timeout_is_a_timeout(receivers: Receivers) -> None:
    async def stall(request: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    receiver = await receivers.start(stall)
    began = time.monotonic()

    async with loopback_sender(total_timeout_s=0.5) as sender:
        attempt = await sender.send(
            receiver.url(), BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    elapsed = time.monotonic() - began
    assert attempt.error is AttemptError.TIMEOUT
    assert attempt.status_code is None
    assert 0.4 <= elapsed < 2.0
    assert 400 <= attempt.latency_ms < 2000
    assert classify_response(attempt.status_code).action is Action.RETRY


async def test_a_trickling_body_cannot_outlast_the_total_timeout(receivers: Receivers) -> None:
    async def trickle(request: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    receiver = await receivers.start(trickle)

    async with loopback_sender(total_timeout_s=0.5) as sender:
        attempt = await sender.send(
            receiver.url(), BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    assert attempt.error is AttemptError.TIMEOUT
    assert attempt.latency_ms < 2000


async def test_an_endless_body_is_cut_at_64_kib(receivers: Receivers) -> None:
    chunk = b"x" * 65536
    limit = 4096  # × 64 KiB = 256 MiB: the sender would read it all in seconds if it did not cut
    sent = 0
    finished = asyncio.Event()

    async def stream(request: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(chunk) * limit))
        try:
            for _ in range(limit):
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        finally:
            finished.set()

    receiver = await receivers.start(stream)

    async with loopback_sender(total_timeout_s=10.0) as sender:
        attempt = await sender.send(
            receiver.url(), BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )
    await asyncio.wait_for(finished.wait(), timeout=5)

    assert attempt.status_code == 200
    assert attempt.response_bytes == MAX_RESPONSE_BYTES
    # Kernel socket buffers absorb a few MiB after the sender hangs up, never 256 MiB.
    assert sent < 64 * 1024 * 1024


async def test_host_name_is_sent_to_the_checked_address_without_a_second_lookup(
    receivers: Receivers,
) -> None:
    receiver = await receivers.start(answer(200))
    # .test never resolves in real DNS: success proves the connect used the checked address.
    resolver = StaticResolver({"receiver.test": ["127.0.0.1"]})
    policy = AddressPolicy(LOOPBACK_ONLY, resolver=resolver)

    async with WebhookSender(policy) as sender:
        attempt = await sender.send(
            receiver.url(host="receiver.test"),
            BODY,
            webhook_id="m",
            signing_secrets=[generate_secret()],
        )

    assert attempt.status_code == 200
    assert resolver.lookups == ["receiver.test"]
    assert receiver.requests[0].headers["host"] == f"receiver.test:{receiver.port}"


async def test_pooled_connection_is_reused_for_the_same_endpoint(receivers: Receivers) -> None:
    receiver = await receivers.start(answer(200))
    secret = generate_secret()

    async with loopback_sender() as sender:
        for webhook_id in ("m1", "m2", "m3"):
            attempt = await sender.send(
                receiver.url(), BODY, webhook_id=webhook_id, signing_secrets=[secret]
            )
            assert attempt.status_code == 200

    assert receiver.connections == 1
    assert [request.headers["webhook-id"] for request in receiver.requests] == ["m1", "m2", "m3"]


async def test_refused_destination_never_reaches_the_receiver(receivers: Receivers) -> None:
    receiver = await receivers.start(answer(200))

    async with WebhookSender(AddressPolicy()) as sender:
        attempt = await sender.send(
            receiver.url(), BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    assert attempt.error is AttemptError.REFUSED
    assert receiver.connections == 0


async def test_closed_port_is_a_connect_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async with loopback_sender() as sender:
        attempt = await sender.send(
            f"http://127.0.0.1:{port}/hook",
            BODY,
            webhook_id="m",
            signing_secrets=[generate_secret()],
        )

    assert attempt.error is AttemptError.CONNECT
    assert classify_response(attempt.status_code).action is Action.RETRY


async def test_concurrent_deliveries_to_one_endpoint_are_bounded(receivers: Receivers) -> None:
    in_flight = 0
    most = 0

    async def slow_ok(request: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.1)
        in_flight -= 1
        await respond(writer, 200)

    receiver = await receivers.start(slow_ok)
    secret = generate_secret()

    async with loopback_sender(max_concurrency_per_endpoint=2) as sender:
        attempts = await asyncio.gather(
            *(
                sender.send(receiver.url(), BODY, webhook_id=f"m{n}", signing_secrets=[secret])
                for n in range(6)
            )
        )

    assert [attempt.status_code for attempt in attempts] == [200] * 6
    assert most == 2


@dataclass(frozen=True)
class Certificates:
    authority: Path
    chain: Path
    key: Path


def issue_certificates(directory: Path, host_name: str) -> Certificates:
    """A throwaway CA and a server certificate for `host_name`, valid for an hour."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Switchboard test CA")])
    authority = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    certificates = Certificates(
        directory / "ca.pem", directory / "server.pem", directory / "server.key"
    )
    certificates.authority.write_bytes(authority.public_bytes(serialization.Encoding.PEM))
    certificates.chain.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    certificates.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificates


async def tls_receiver(
    receivers: Receivers, certificates: Certificates, server_names: list[str | None]
) -> Receiver:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.chain, certificates.key)

    def record_server_name(
        connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext
    ) -> None:
        server_names.append(name)

    context.sni_callback = record_server_name
    return await receivers.start(answer(200), ssl_context=context)


async def test_https_uses_the_host_name_for_sni_and_certificate_check(
    receivers: Receivers, tmp_path: Path
) -> None:
    certificates = issue_certificates(tmp_path, "receiver.test")
    server_names: list[str | None] = []
    receiver = await tls_receiver(receivers, certificates, server_names)
    policy = AddressPolicy(LOOPBACK_ONLY, resolver=StaticResolver({"receiver.test": ["127.0.0.1"]}))
    trust = ssl.create_default_context(cafile=certificates.authority)
    secret = generate_secret()

    async with WebhookSender(policy, ssl_context=trust) as sender:
        attempt = await sender.send(
            receiver.url(host="receiver.test", scheme="https"),
            BODY,
            webhook_id="m",
            signing_secrets=[secret],
        )

    assert attempt.status_code == 200, attempt.detail
    assert server_names == ["receiver.test"]
    [request] = receiver.requests
    assert request.headers["host"] == f"receiver.test:{receiver.port}"
    Webhook(secret).verify(request.body, request.headers)


async def test_https_certificate_for_another_name_is_a_connect_failure(
    receivers: Receivers, tmp_path: Path
) -> None:
    certificates = issue_certificates(tmp_path, "receiver.test")
    receiver = await tls_receiver(receivers, certificates, [])
    policy = AddressPolicy(LOOPBACK_ONLY, resolver=StaticResolver({"impostor.test": ["127.0.0.1"]}))
    trust = ssl.create_default_context(cafile=certificates.authority)

    async with WebhookSender(policy, ssl_context=trust) as sender:
        attempt = await sender.send(
            receiver.url(host="impostor.test", scheme="https"),
            BODY,
            webhook_id="m",
            signing_secrets=[generate_secret()],
        )

    assert attempt.error is AttemptError.CONNECT
    assert "certificate" in attempt.detail.lower()
    assert receiver.requests == []
