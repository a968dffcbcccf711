"""SSRF vectors: which callback URLs and addresses are refused, before any socket connects.

The connect spy records every socket connect and refuses any that is not to loopback.
"""

from __future__ import annotations

import socket
from ipaddress import ip_address
from typing import Any

import pytest

from switchboard.callbacks.sender import AttemptError, WebhookSender
from switchboard.callbacks.ssrf import (
    AddressPolicy,
    DestinationRefusedError,
    HostResolutionError,
    StaticResolver,
    resolve_host,
)
from switchboard.config import WebhookSettings
from switchboard.errors import ConfigurationError


class ConnectSpy:
    def __init__(self) -> None:
        self.addresses: list[Any] = []

    def record(self, address: Any) -> None:
        self.addresses.append(address)
        host = address[0] if isinstance(address, tuple) else None
        if host is None or not ip_address(host.split("%")[0]).is_loopback:
            # Never let a test reach a real network, even when the code under test is wrong.
            raise ConnectionRefusedError(f"connect spy: refused {address!r}")


@pytest.fixture
def connect_spy(monkeypatch: pytest.MonkeyPatch) -> ConnectSpy:
    spy = ConnectSpy()
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        spy.record(address)
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        spy.record(address)
        return original_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return spy


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

DENIED_ADDRESSES = [
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",  # carrier-grade NAT: is_private is False on 3.11
    "192.0.2.1",
    "198.18.0.1",
    "224.0.0.1",  # is_global is True on 3.11
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "ff0e::1",  # global-scope multicast
    "2001:db8::1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1: is_global is True on 3.11
    "64:ff9b:1::a00:1",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1: is_global is True on 3.11
    "::7f00:1",  # IPv4-compatible 127.0.0.1: is_global is True on 3.11
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
]

PUBLIC_ADDRESSES = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", DENIED_ADDRESSES)
def test_non_public_addresses_are_denied(address: str) -> None:
    assert not AddressPolicy().permits(ip_address(address))


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_are_permitted(address: str) -> None:
    assert AddressPolicy().permits(ip_address(address))


def test_allow_list_opens_exactly_its_networks() -> None:
    policy = AddressPolicy(["127.0.0.1/32"])

    assert policy.permits(ip_address("127.0.0.1"))
    assert policy.permits(ip_address("::ffff:127.0.0.1"))
    assert not policy.permits(ip_address("127.0.0.2"))
    assert not policy.permits(ip_address("::1"))
    assert not policy.permits(ip_address("10.0.0.1"))


# Every name resolves to a public address, so a refusal proves the host itself was judged.
LIAR = StaticResolver(
    {
        name: ["8.8.8.8"]
        for name in ("0177.0.0.1", "2130706433", "0x7f.1", "127.1", "0x7f000001", "017700000001")
    }
)


@pytest.mark.parametrize(
    "url",
    [
        "http://0177.0.0.1/hook",
        "http://2130706433/hook",
        "http://0x7f.1/hook",
        "http://127.1/hook",
        "http://0x7f000001/hook",
        "http://017700000001/hook",
        "http://127.0.0.1/hook",
        "http://127.0.0.1./hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[64:ff9b::7f00:1]/hook",
        "http://[2002:7f00:1::]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://[fe80::1%25eth0]/hook",
        "ftp://hooks.example.com/hook",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "http://user:pass@hooks.example.com/hook",
        "http://hooks.example.com:99999/hook",
        "http://hooks.exa mple.com/hook",
        "http:///hook",
        "not a url",
    ],
)
async def test_refused_urls(url: str) -> None:
    with pytest.raises(DestinationRefusedError):
        await AddressPolicy(resolver=LIAR).check(url)

    assert LIAR.lookups == []


@pytest.mark.parametrize(
    ("name", "answers"),
    [
        ("localhost", ["127.0.0.1", "::1"]),
        ("metadata.example", ["169.254.169.254"]),
        ("mixed.example", ["8.8.8.8", "10.0.0.1"]),
        ("mixed6.example", ["2606:4700:4700::1111", "fd00::1"]),
        ("nat64.example", ["64:ff9b::a9fe:a9fe"]),
        ("mapped.example", ["::ffff:192.168.0.1"]),
        ("garbage.example", ["not-an-address"]),
    ],
)
async def test_names_resolving_to_any_denied_address_are_refused(
    name: str, answers: list[str]
) -> None:
    resolver = StaticResolver({name: answers})

    with pytest.raises(DestinationRefusedError) as refused:
        await AddressPolicy(resolver=resolver).check(f"https://{name}/hook")

    assert resolver.lookups == [name]
    assert not any(answer in refused.value.reason for answer in answers)


async def test_a_public_name_gives_a_destination_with_every_checked_address() -> None:
    resolver = StaticResolver({"hooks.example.com": ["8.8.8.8", "2606:4700:4700::1111"]})

    destination = await AddressPolicy(resolver=resolver).check(
        "HTTPS://Hooks.Example.com:8443/dlr/v1?tenant=7#frag"
    )

    assert destination.scheme == "https"
    assert destination.host == "hooks.example.com"
    assert destination.port == 8443
    assert destination.target == "/dlr/v1?tenant=7"
    assert destination.addresses == (ip_address("8.8.8.8"), ip_address("2606:4700:4700::1111"))
    assert destination.host_header == "hooks.example.com:8443"


async def test_a_fully_qualified_name_loses_its_trailing_dot() -> None:
    resolver = StaticResolver({"hooks.example.com": ["8.8.8.8"]})

    destination = await AddressPolicy(resolver=resolver).check("https://hooks.example.com./x")

    assert destination.host == "hooks.example.com"
    assert resolver.lookups == ["hooks.example.com"]


async def test_an_unresolvable_name_is_a_resolution_error() -> None:
    with pytest.raises(HostResolutionError):
        await AddressPolicy(resolver=StaticResolver({})).check("https://nowhere.example/hook")


async def test_allowed_ports_restrict_the_destination() -> None:
    policy = AddressPolicy(
        resolver=StaticResolver({"hooks.example.com": ["8.8.8.8"]}), allowed_ports={443, 8443}
    )

    assert (await policy.check("https://hooks.example.com/hook")).port == 443
    with pytest.raises(DestinationRefusedError, match="port 8080"):
        await policy.check("http://hooks.example.com:8080/hook")


async def test_allow_listed_loopback_literal_is_accepted_and_unmapped() -> None:
    destination = await AddressPolicy(["127.0.0.1/32"]).check("http://[::ffff:127.0.0.1]:9/x")

    assert destination.addresses == (ip_address("127.0.0.1"),)
    assert destination.host_header == "[::ffff:127.0.0.1]:9"


@pytest.mark.parametrize("host", ["0177.0.0.1", "2130706433", "0x7f.1", "127.1"])
async def test_the_system_resolver_really_reads_legacy_forms_as_loopback(host: str) -> None:
    # Numeric forms are parsed by getaddrinfo itself (inet_aton): no DNS query leaves the box.
    assert await resolve_host(host, 80) == ["127.0.0.1"]


def test_invalid_allow_list_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="allow_networks"):
        AddressPolicy.from_settings(WebhookSettings(allow_networks=["127.0.0.1/8"]))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://2130706433:9/hook",
        "http://0x7f.1:9/hook",
        "http://127.1:9/hook",
        "http://[::1]:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:9/hook",
        "http://rebind.example/hook",
    ],
)
async def test_sender_refuses_before_any_socket_connects(url: str, connect_spy: ConnectSpy) -> None:
    resolver = StaticResolver({"localhost": ["127.0.0.1"], "rebind.example": ["8.8.8.8", "::1"]})
    async with WebhookSender(AddressPolicy(resolver=resolver)) as sender:
        attempt = await sender.send(url, b"{}", webhook_id="msg_1", signing_secrets=[SECRET])

    assert attempt.error is AttemptError.REFUSED
    assert attempt.status_code is None
    assert connect_spy.addresses == []
