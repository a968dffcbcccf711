"""The sender on a recording network: what it connects to and the bytes it writes."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from switchboard.callbacks.secrets import generate_secret
from switchboard.callbacks.sender import (
    MAX_RESPONSE_BYTES,
    AttemptError,
    Link,
    WebhookSender,
)
from switchboard.callbacks.ssrf import AddressPolicy, IPAddress, StaticResolver
from switchboard.clock import FrozenClock
from switchboard.domain.callbacks import Action, classify_response

BODY = b'{"apiKey":null,"messageId":"m-1","status":"DELIVRD"}'
OK = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
OK_AND_CLOSE = [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"]


class RecordingLink:
    """A link whose answer is scripted (a real StreamReader fed with it) and whose writes are kept."""

    def __init__(self, response: Sequence[bytes], *, keep_open: bool) -> None:
        self.reader = asyncio.StreamReader(limit=64 * 1024)
        for chunk in response:
            self.reader.feed_data(chunk)
        if not keep_open:
            self.reader.feed_eof()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        return None

    async def read(self, max_bytes: int) -> bytes:
        return await self.reader.read(max_bytes)

    async def readuntil(self, separator: bytes) -> bytes:
        return await self.reader.readuntil(separator)

    def at_eof(self) -> bool:
        return self.reader.at_eof()

    def close(self) -> None:
        self.closed = True


class RecordingNetwork:
    """Answers every connect with a scripted response; never opens a socket."""

    def __init__(
        self, response: Sequence[bytes], refuse: Iterable[str] = (), *, keep_open: bool = False
    ) -> None:
        self.response = list(response)
        self.refuse = set(refuse)
        self.keep_open = keep_open
        self.connects: list[tuple[str, int]] = []
        self.server_names: list[tuple[str, bool]] = []
        self.links: list[RecordingLink] = []

    async def connect(
        self,
        address: IPAddress,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        server_name: str,
    ) -> Link:
        self.connects.append((str(address), port))
        self.server_names.append((server_name, ssl_context is not None))
        if str(address) in self.refuse:
            raise ConnectionRefusedError("refused")
        link = RecordingLink(self.response, keep_open=self.keep_open)
        self.links.append(link)
        return link


class RebindingResolver:
    """Answers a public address first and loopback on every later question."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        return ["1.1.1.1"] if len(self.lookups) == 1 else ["127.0.0.1"]


def _sender(
    network: RecordingNetwork, table: dict[str, list[str]], clock: FrozenClock | None = None
) -> WebhookSender:
    policy = AddressPolicy(resolver=StaticResolver(table))
    return WebhookSender(policy, network=network, clock=clock or FrozenClock())


def _split(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("ascii").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return request_line, headers, body


async def test_dns_rebinding_gets_no_second_question_and_no_loopback_connect() -> None:
    resolver = RebindingResolver()
    network = RecordingNetwork(OK)
    secret = generate_secret()
    policy = AddressPolicy(resolver=resolver)

    async with WebhookSender(policy, network=network) as sender:
        first = await sender.send(
            "http://rebind.example/hook", BODY, webhook_id="msg_1", signing_secrets=[secret]
        )
        second = await sender.send(
            "http://rebind.example/hook", BODY, webhook_id="msg_1", signing_secrets=[secret]
        )

    assert first.status_code == 200
    assert second.error is AttemptError.REFUSED
    assert resolver.lookups == ["rebind.example", "rebind.example"]
    assert network.connects == [("1.1.1.1", 80)]


async def test_request_keeps_the_host_name_and_is_signed_over_the_exact_body() -> None:
    network = RecordingNetwork(OK)
    secret = generate_secret()
    clock = FrozenClock(datetime.now(UTC))

    async with _sender(network, {"hooks.example.com": ["8.8.8.8"]}, clock) as sender:
        attempt = await sender.send(
            "http://hooks.example.com:8080/dlr?tenant=7",
            BODY,
            webhook_id="msg_2",
            signing_secrets=[secret],
        )

    request_line, headers, body = _split(bytes(network.links[0].written))
    assert attempt.status_code == 200
    assert attempt.error is None
    assert network.connects == [("8.8.8.8", 8080)]
    assert request_line == "POST /dlr?tenant=7 HTTP/1.1"
    assert headers["host"] == "hooks.example.com:8080"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "Switchboard"
    assert headers["webhook-id"] == "msg_2"
    assert headers["webhook-timestamp"] == str(attempt.webhook_timestamp)
    assert attempt.webhook_timestamp == int(clock.now().timestamp())
    assert headers["content-length"] == str(len(BODY))
    assert body == BODY
    assert Webhook(secret).verify(body, headers)["messageId"] == "m-1"


async def test_each_attempt_has_its_own_timestamp_and_the_same_id() -> None:
    network = RecordingNetwork(OK_AND_CLOSE)
    clock = FrozenClock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    secret = generate_secret()

    async with _sender(network, {"hooks.example.com": ["8.8.8.8"]}, clock) as sender:
        first = await sender.send(
            "http://hooks.example.com/", BODY, webhook_id="msg_3", signing_secrets=[secret]
        )
        clock.advance(300)
        second = await sender.send(
            "http://hooks.example.com/", BODY, webhook_id="msg_3", signing_secrets=[secret]
        )

    heads = [_split(bytes(stream.written))[1] for stream in network.links]
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.webhook_timestamp - first.webhook_timestamp == 300
    assert [head["webhook-id"] for head in heads] == ["msg_3", "msg_3"]
    assert heads[0]["webhook-signature"] != heads[1]["webhook-signature"]


async def test_ipv6_destination_connects_to_the_checked_address() -> None:
    network = RecordingNetwork(OK)

    async with _sender(network, {"v6.example": ["2606:4700:4700::1111"]}) as sender:
        attempt = await sender.send(
            "https://v6.example/hook", BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    assert attempt.status_code == 200
    assert network.connects == [("2606:4700:4700::1111", 443)]
    assert _split(bytes(network.links[0].written))[1]["host"] == "v6.example"


async def test_next_checked_address_is_tried_when_the_first_refuses() -> None:
    network = RecordingNetwork(OK, refuse={"8.8.8.8"})

    async with _sender(network, {"two.example": ["8.8.8.8", "8.8.4.4"]}) as sender:
        attempt = await sender.send(
            "http://two.example/", BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    assert attempt.status_code == 200
    assert network.connects == [("8.8.8.8", 80), ("8.8.4.4", 80)]


async def test_connect_failure_on_every_address_is_a_connect_attempt() -> None:
    network = RecordingNetwork(OK, refuse={"8.8.8.8"})

    async with _sender(network, {"one.example": ["8.8.8.8"]}) as sender:
        attempt = await sender.send(
            "http://one.example/", BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    assert attempt.error is AttemptError.CONNECT
    assert attempt.status_code is None
    assert classify_response(attempt.status_code).action is Action.RETRY


async def test_error_body_is_reported_briefly_and_retry_after_is_passed_on() -> None:
    response = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\nContent-Length: 20\r\n\r\n"
    network = RecordingNetwork([response, b"slow   down\n please!"])

    async with _sender(network, {"busy.example": ["8.8.8.8"]}) as sender:
        attempt = await sender.send(
            "http://busy.example/", BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    assert attempt.status_code == 429
    assert attempt.retry_after == "120"
    assert attempt.detail == "slow down please!"
    outcome = classify_response(attempt.status_code, attempt.retry_after)
    assert outcome.retry_after is not None
    assert outcome.retry_after.total_seconds() == 120


async def test_response_body_is_read_up_to_64_kib_only() -> None:
    size = 4 * MAX_RESPONSE_BYTES
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
    network = RecordingNetwork([head, *([b"x" * 8192] * (size // 8192))])

    async with _sender(network, {"big.example": ["8.8.8.8"]}) as sender:
        attempt = await sender.send(
            "http://big.example/", BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    assert attempt.status_code == 200
    assert attempt.response_bytes == MAX_RESPONSE_BYTES


async def test_garbage_answer_is_a_protocol_attempt() -> None:
    network = RecordingNetwork([b"SMTP ready\r\n\r\n"])

    async with _sender(network, {"odd.example": ["8.8.8.8"]}) as sender:
        attempt = await sender.send(
            "http://odd.example/", BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    assert attempt.error is AttemptError.PROTOCOL


async def test_unresolvable_host_is_a_resolve_attempt() -> None:
    network = RecordingNetwork(OK)

    async with _sender(network, {}) as sender:
        attempt = await sender.send(
            "http://gone.example/", BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )

    assert attempt.error is AttemptError.RESOLVE
    assert network.connects == []


async def test_malformed_secret_raises_before_anything_is_resolved_or_sent() -> None:
    network = RecordingNetwork(OK)
    resolver = StaticResolver({"hooks.example.com": ["8.8.8.8"]})
    policy = AddressPolicy(resolver=resolver)

    async with WebhookSender(policy, network=network) as sender:
        with pytest.raises(ValueError, match="webhook secret"):
            await sender.send(
                "http://hooks.example.com/", BODY, webhook_id="m", signing_secrets=["nope"]
            )

    assert resolver.lookups == []
    assert network.connects == []


async def test_https_connects_to_the_checked_address_with_the_host_name_for_tls() -> None:
    network = RecordingNetwork(OK)

    async with _sender(network, {"hooks.example.com": ["8.8.8.8"]}) as sender:
        attempt = await sender.send(
            "https://hooks.example.com/dlr",
            BODY,
            webhook_id="m",
            signing_secrets=[generate_secret()],
        )

    assert attempt.status_code == 200
    assert network.connects == [("8.8.8.8", 443)]
    assert network.server_names == [("hooks.example.com", True)]


async def test_kept_connection_serves_the_next_attempt_while_its_address_is_still_checked() -> None:
    answers = OK * 3
    network = RecordingNetwork(answers, keep_open=True)
    resolver = StaticResolver({"hooks.example.com": ["8.8.8.8"]})
    policy = AddressPolicy(resolver=resolver)
    secret = generate_secret()

    async with WebhookSender(policy, network=network) as sender:
        for webhook_id in ("m1", "m2"):
            attempt = await sender.send(
                "http://hooks.example.com/", BODY, webhook_id=webhook_id, signing_secrets=[secret]
            )
            assert attempt.status_code == 200

    assert network.connects == [("8.8.8.8", 80)]
    assert resolver.lookups == ["hooks.example.com", "hooks.example.com"]  # checked every time
    assert bytes(network.links[0].written).count(b"POST / HTTP/1.1") == 2


async def test_kept_connection_to_an_address_no_longer_in_the_answer_is_not_used() -> None:
    network = RecordingNetwork(OK * 2, keep_open=True)
    answers = [["8.8.8.8"], ["8.8.4.4"]]

    async def moving(host: str, port: int) -> Sequence[str]:
        return answers.pop(0)

    policy = AddressPolicy(resolver=moving)
    secret = generate_secret()

    async with WebhookSender(policy, network=network) as sender:
        await sender.send(
            "http://hooks.example.com/", BODY, webhook_id="m1", signing_secrets=[secret]
        )
        attempt = await sender.send(
            "http://hooks.example.com/", BODY, webhook_id="m2", signing_secrets=[secret]
        )

    assert attempt.status_code == 200
    assert network.connects == [("8.8.8.8", 80), ("8.8.4.4", 80)]
    assert network.links[0].closed


async def test_chunked_interim_and_broken_answers_are_read_by_their_framing() -> None:
    """The answer's framing is h11's: chunks, 100 Continue before the answer, garbage refused."""
    chunked = [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nbusy,\r\n", b"6\r\n later\r\n0\r\n\r\n",
    ]  # fmt: skip
    async with _sender(RecordingNetwork(chunked), {"busy.example": ["8.8.8.8"]}) as sender:
        attempt = await sender.send(
            "http://busy.example/", BODY, webhook_id="m", signing_secrets=[generate_secret()]
        )
    assert attempt.status_code == 503
    assert attempt.detail == "busy, later"

    for garbage in ([b"SMTP ready\r\n\r\n"], [b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok"]):
        network = RecordingNetwork(garbage)
        async with _sender(network, {"odd.example": ["8.8.8.8"]}) as sender:
            attempt = await sender.send(
                "http://odd.example/", BODY, webhook_id="m", signing_secrets=[generate_secret()]
            )
        assert attempt.status_code is None
        assert attempt.error is AttemptError.PROTOCOL
