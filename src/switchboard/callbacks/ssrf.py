"""SSRF guard for callback URLs: parse, resolve once, check every address, hand back what to pin.

The sender connects only to the addresses returned here, so a resolver that answers a public
address now and a private one a moment later (DNS rebinding) never gets a second question.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

import httpx

from switchboard.config import WebhookSettings
from switchboard.errors import ConfigurationError

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Every address (A and AAAA) a host name has, as IP strings; raises OSError when it has none."""

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_ADDRESSES = 16
MAX_REMEMBERED_URLS = 1024

# On Python 3.11 these report is_global (or are shared space) yet lead to addresses we deny:
# NAT64 and 6to4 embed an IPv4 address, ::/96 is the deprecated IPv4-compatible form.
_ALWAYS_DENIED: tuple[IPNetwork, ...] = tuple(
    ip_network(network)
    for network in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96", "100.64.0.0/10")
)
# inet_aton() accepts 0177.0.0.1, 2130706433, 0x7f.1 and 127.1, and so does getaddrinfo().
_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.I)
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}")


class DestinationError(Exception):
    """A callback URL that will not be called; `reason` is safe to show the tenant."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DestinationRefusedError(DestinationError):
    """The URL, or an address its host resolves to, is outside the policy."""


class HostResolutionError(DestinationError):
    """The host name has no address right now."""


@dataclass(frozen=True)
class Destination:
    """A checked callback target: the URL's parts plus every address it may be reached at."""

    scheme: str
    host: str  # ASCII (IDNA) host name, or an IP literal without brackets
    port: int
    target: str  # path and query, percent-encoded
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


async def resolve_host(host: str, port: int) -> list[str]:
    """The system resolver (getaddrinfo), addresses in its preference order, duplicates dropped."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class StaticResolver:
    """A resolver answering from a fixed table and recording each question; for tests."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self._table = {host.lower(): tuple(addresses) for host, addresses in table.items()}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        addresses = self._table.get(host.lower())
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return addresses


class AddressPolicy:
    """Which callback URLs may be called: http(s) only, and only to public addresses.

    An address is allowed when it is in `allow_networks` (server-side configuration, e.g.
    127.0.0.1/32 for tests) or when it is global, not multicast and not in a range that embeds
    an IPv4 address. IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
    `require_https` and `allowed_ports` (None: any) bind every URL except those whose addresses
    are all in `allow_networks`: an operator who allow-listed a network trusts it.
    """

    def __init__(
        self,
        allow_networks: Iterable[str] = (),
        *,
        resolver: Resolver = resolve_host,
        allowed_ports: Collection[int] | None = None,
        require_https: bool = False,
    ) -> None:
        self._allowed = tuple(ip_network(network) for network in allow_networks)
        self._resolver = resolver
        self._allowed_ports = None if allowed_ports is None else frozenset(allowed_ports)
        self._require_https = require_https
        # Allowed URLs whose host is an IP literal: nothing to resolve, so the answer is fixed.
        self._literal_answers: dict[str, Destination] = {}

    @classmethod
    def from_settings(
        cls, settings: WebhookSettings, *, resolver: Resolver = resolve_host
    ) -> AddressPolicy:
        try:
            return cls(
                settings.allow_networks,
                resolver=resolver,
                allowed_ports=settings.allowed_ports or None,
                require_https=settings.require_https,
            )
        except ValueError as exc:
            raise ConfigurationError(f"webhooks.allow_networks: {exc}") from None

    def permits(self, address: IPAddress) -> bool:
        if self.is_allow_listed(address):
            return True
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_multicast or any(address in network for network in _ALWAYS_DENIED):
            return False
        return address.is_global

    def is_allow_listed(self, address: IPAddress) -> bool:
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._allowed)

    async def check(self, url: str) -> Destination:
        """Parse and resolve `url` and check every address; one denied address refuses it all.

        Raises DestinationRefusedError or HostResolutionError. Resolves at most once and never
        opens a connection.
        """
        known = self._literal_answers.get(url)
        if known is not None:
            return known
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise DestinationRefusedError("not a valid URL") from None
        if parsed.scheme not in DEFAULT_PORTS:
            raise DestinationRefusedError("only http and https URLs can be called")
        if parsed.userinfo:
            raise DestinationRefusedError("credentials in the URL are not supported")
        port = parsed.port or DEFAULT_PORTS[parsed.scheme]
        if not 0 < port < 65536:
            raise DestinationRefusedError("not a valid port")
        exception = self._outside_rules(parsed.scheme, port)
        if exception is not None and not self._allowed:
            raise DestinationRefusedError(exception)
        # A fully qualified "name." is the same host; SNI and certificates want it without the dot.
        host = parsed.raw_host.decode("ascii").lower().removesuffix(".")
        addresses = await self._addresses(host, port)
        if not all(self.permits(address) for address in addresses):
            raise DestinationRefusedError(f"{host} is not a public address or resolves to one")
        if exception is not None and not all(map(self.is_allow_listed, addresses)):
            raise DestinationRefusedError(exception)
        destination = Destination(
            scheme=parsed.scheme,
            host=host,
            port=port,
            target=parsed.raw_path.decode("ascii"),
            addresses=tuple(_unmapped(address) for address in addresses),
        )
        if _ip_literal(host) is not None:
            if len(self._literal_answers) >= MAX_REMEMBERED_URLS:
                self._literal_answers.clear()
            self._literal_answers[url] = destination
        return destination

    def _outside_rules(self, scheme: str, port: int) -> str | None:
        """Why the scheme or port is refused for a public destination; None when allowed."""
        if self._require_https and scheme != "https":
            return "only https URLs can be called"
        if self._allowed_ports is not None and port not in self._allowed_ports:
            return f"port {port} is not allowed"
        return None

    async def _addresses(self, host: str, port: int) -> tuple[IPAddress, ...]:
        literal = _ip_literal(host)
        if literal is not None:
            return (literal,)
        if _LEGACY_IPV4.fullmatch(host) or _HOST_NAME.fullmatch(host) is None:
            raise DestinationRefusedError("not a valid host")
        try:
            answers = await self._resolver(host, port)
        except OSError:
            raise HostResolutionError(f"{host} does not resolve") from None
        if not answers:
            raise HostResolutionError(f"{host} does not resolve")
        try:
            return tuple(ip_address(answer) for answer in answers[:MAX_ADDRESSES])
        except ValueError:
            raise DestinationRefusedError(f"{host} resolves to something unusable") from None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host) is None:
        return None
    try:
        return IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
