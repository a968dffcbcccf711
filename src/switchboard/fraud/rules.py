"""The guard's pure rules: prefixes, rule modes, the safe list and each rule's verdict."""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Rule(enum.StrEnum):
    PREFIX_VELOCITY = "prefix_velocity"
    CLIENT_IP = "client_ip"
    COUNTRY = "country"
    HIGH_COST = "high_cost"
    CONVERSION = "conversion"


class Mode(enum.StrEnum):
    ON = "on"  # trips refuse the send
    OFF = "off"
    MONITOR = "monitor"  # trips are recorded, the send goes through


def parse_mode(raw: Any, default: Mode) -> Mode:
    """An account's `fraud.<rule>` value; anything unreadable counts as on (fail closed)."""
    if raw is None:
        return default
    if isinstance(raw, bool):
        return Mode.ON if raw else Mode.OFF
    try:
        return Mode(str(raw).strip().lower())
    except ValueError:
        return Mode.ON


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """The figures the rules compare against (platform `[fraud]` settings)."""

    wildcard_digits: int = 3
    prefix_window_s: int = 3600
    prefix_floor: int = 10
    prefix_factor: float = 5.0
    baseline_s: int = 86400
    prefix_block_s: int = 12 * 3600
    ip_window_s: int = 3600
    ip_limit: int = 10
    ip_block_s: int = 3600
    conversion_window_s: int = 3600
    conversion_grace_s: int = 120
    conversion_min_prefix_sends: int = 20
    conversion_min_country_sends: int = 50
    conversion_min_baseline_sends: int = 200
    conversion_normal: float = 0.5
    conversion_drop: float = 0.4
    conversion_block_s: int = 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class Trip:
    """A rule that fired: what it names (a prefix, an address, a country) and why."""

    rule: Rule
    subject: str
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)
    hold_s: int | None = None  # refuse the subject this long (None: judged on every send)


def prefix_of(e164: str, wildcard_digits: int) -> str:
    """The number's range: E.164 minus its last digits (Twilio's "1k prefix" for 3)."""
    keep = max(len(e164) - wildcard_digits, 2)
    return e164[:keep]


def shown_prefix(prefix: str, wildcard_digits: int) -> str:
    return prefix + "x" * wildcard_digits


def _matches(entry: str, e164: str) -> bool:
    return e164.startswith(entry[:-1]) if entry.endswith("*") else e164 == entry


def normalise_safe_entry(raw: str) -> str:
    """A safe-list entry: a full E.164 number, or a prefix ending in '*' (e.g. +9198765*)."""
    value = raw.strip().replace(" ", "")
    body = value.removesuffix("*")
    if not body.startswith("+") or not body[1:].isdigit() or not 2 <= len(body) - 1 <= 15:
        raise ValueError(f"'{raw}' is not +digits or a +digits* prefix")
    return value


def is_safe(entries: Iterable[str], e164: str) -> bool:
    return any(_matches(entry, e164) for entry in entries)


def check_country(country_code: str, permitted: frozenset[str] | None) -> Trip | None:
    if permitted is None or country_code in permitted:
        return None
    shown = ", ".join(sorted(permitted)) or "none"
    return Trip(
        rule=Rule.COUNTRY,
        subject=country_code,
        reason=f"country code {country_code} is not permitted for this account (permitted: {shown})",
        figures={"countryCode": country_code, "permitted": sorted(permitted)},
    )


def check_high_cost(e164: str, ranges: Iterable[str]) -> Trip | None:
    for prefix in ranges:
        if e164.startswith(prefix):
            return Trip(
                rule=Rule.HIGH_COST,
                subject=prefix,
                reason=f"{prefix}… is a premium or high-cost range",
                figures={"range": prefix},
            )
    return None


def prefix_normal(before_window: int, limits: Thresholds) -> float:
    """A range's numbers per window over the rest of its baseline period."""
    windows = max((limits.baseline_s - limits.prefix_window_s) / limits.prefix_window_s, 1.0)
    return before_window / windows


def prefix_limit(before_window: int, limits: Thresholds) -> float:
    """Numbers a range may take in a window: max(floor, factor x its own normal)."""
    return max(
        float(limits.prefix_floor), limits.prefix_factor * prefix_normal(before_window, limits)
    )


def check_prefix_velocity(
    prefix: str, in_window: int, before_window: int, limits: Thresholds
) -> Trip | None:
    """`in_window` numbers of the prefix sent to in the window so far, `before_window` in the
    rest of the baseline period: a send to a new number trips when it would pass max(floor,
    factor x the prefix's own normal per window)."""
    normal = prefix_normal(before_window, limits)
    limit = prefix_limit(before_window, limits)
    count = in_window + 1
    if count <= limit:
        return None
    minutes = limits.prefix_window_s // 60
    ratio = f"{count / normal:.0f}x this prefix's normal" if normal else "no earlier traffic"
    shown = shown_prefix(prefix, limits.wildcard_digits)
    return Trip(
        rule=Rule.PREFIX_VELOCITY,
        subject=shown,
        reason=f"{count} numbers in {shown} in {minutes} min, {ratio} (limit {limit:.0f})",
        figures={
            "prefix": shown,
            "sends": count,
            "windowS": limits.prefix_window_s,
            "normalPerWindow": round(normal, 2),
            "limit": round(limit, 2),
        },
        hold_s=limits.prefix_block_s,
    )


def check_client_ip(address: str, in_window: int, limits: Thresholds) -> Trip | None:
    count = in_window + 1
    if count <= limits.ip_limit:
        return None
    return Trip(
        rule=Rule.CLIENT_IP,
        subject=address,
        reason=(
            f"{count} sends for client IP {address} in {limits.ip_window_s // 60} min "
            f"(limit {limits.ip_limit})"
        ),
        figures={
            "clientIp": address,
            "sends": count,
            "windowS": limits.ip_window_s,
            "limit": limits.ip_limit,
        },
        hold_s=limits.ip_block_s,
    )


@dataclass(frozen=True, slots=True)
class Conversion:
    """Sends old enough to have been answered, and the codes verified, over one scope."""

    sent: int
    verified: int

    @property
    def rate(self) -> float:
        return min(self.verified / self.sent, 1.0) if self.sent else 1.0


def normal_conversion(baseline: Conversion, limits: Thresholds) -> float:
    """The account's own conversion when it has enough history, else the platform's figure."""
    if baseline.sent >= limits.conversion_min_baseline_sends:
        return baseline.rate
    return limits.conversion_normal


def check_conversion(
    scopes: Mapping[str, tuple[Conversion, int]], normal: float, limits: Thresholds
) -> Trip | None:
    """Each scope (a prefix, a country) with its figures and minimum sample; the first whose
    conversion fell below `conversion_drop` x the account's normal trips."""
    floor = normal * limits.conversion_drop
    for subject, (seen, min_sends) in scopes.items():
        if seen.sent < min_sends or seen.rate >= floor:
            continue
        return Trip(
            rule=Rule.CONVERSION,
            subject=subject,
            reason=(
                f"{seen.verified} of {seen.sent} codes to {subject} verified in "
                f"{limits.conversion_window_s // 60} min ({seen.rate:.0%}), below {floor:.0%} "
                f"({limits.conversion_drop:.0%} of the account's normal {normal:.0%})"
            ),
            figures={
                "sent": seen.sent,
                "verified": seen.verified,
                "conversion": round(seen.rate, 4),
                "normal": round(normal, 4),
                "floor": round(floor, 4),
            },
            hold_s=limits.conversion_block_s,
        )
    return None


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def client_ip_key(raw: str) -> str:
    """The address rate-limited for a `clientIp`: itself for IPv4, its /64 for IPv6 (one
    subscriber's allocation). Raises ValueError for something that is not an address."""
    value = raw.strip()
    # the common case without ipaddress' objects: a dotted quad already in its shortest form
    if _DOTTED_QUAD.fullmatch(value):
        return value
    address = ipaddress.ip_address(value)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
