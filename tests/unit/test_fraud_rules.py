"""The fraud guard's pure rules: ranges, modes, safe lists and each verdict's figures."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.fraud import rules
from switchboard.fraud.rules import Conversion, Mode, Thresholds

LIMITS = Thresholds()


def test_a_prefix_is_the_number_without_its_last_digits() -> None:
    assert rules.prefix_of("+919876543210", 3) == "+919876543"
    assert rules.shown_prefix("+9198765432", 2) == "+9198765432xx"


@pytest.mark.parametrize(
    ("raw", "mode"),
    [("monitor", Mode.MONITOR), ("OFF", Mode.OFF), (True, Mode.ON), ("bogus", Mode.ON)],
)
def test_an_unreadable_mode_counts_as_on(raw: object, mode: Mode) -> None:
    assert rules.parse_mode(raw, Mode.OFF) is mode


def test_a_cold_prefix_trips_on_the_floor_and_a_busy_one_on_its_own_normal() -> None:
    assert rules.check_prefix_velocity("+919876500", 9, 0, LIMITS) is None
    trip = rules.check_prefix_velocity("+919876500", 10, 0, LIMITS)
    assert trip is not None
    assert trip.figures["sends"] == 11
    assert trip.hold_s == 12 * 3600
    # 23 h of 46 numbers an hour: a normal of 46, a limit of 5 x 46
    assert rules.check_prefix_velocity("+919876500", 200, 46 * 23, LIMITS) is None
    assert rules.check_prefix_velocity("+919876500", 230, 46 * 23, LIMITS) is not None


def test_the_per_ip_limit_allows_ten_an_hour() -> None:
    assert rules.check_client_ip("198.51.100.7", 9, LIMITS) is None
    assert rules.check_client_ip("198.51.100.7", 10, LIMITS) is not None


def test_ipv6_addresses_count_per_64() -> None:
    assert rules.client_ip_key("2001:db8::1") == rules.client_ip_key("2001:db8::ffff")
    assert rules.client_ip_key(" 10.0.0.1 ") == "10.0.0.1"
    with pytest.raises(ValueError, match="does not appear"):
        rules.client_ip_key("10.0.0")


def test_conversion_needs_a_minimum_sample_and_falls_back_to_the_platform_normal() -> None:
    normal = rules.normal_conversion(Conversion(sent=10, verified=1), LIMITS)
    assert normal == LIMITS.conversion_normal
    scopes = {"+91": (Conversion(sent=49, verified=0), 50)}
    assert rules.check_conversion(scopes, normal, LIMITS) is None
    trip = rules.check_conversion({"+91": (Conversion(60, 5), 50)}, normal, LIMITS)
    assert trip is not None
    assert trip.figures["conversion"] == round(5 / 60, 4)
    assert rules.check_conversion({"+91": (Conversion(60, 30), 50)}, normal, LIMITS) is None


def test_safe_list_entries_are_numbers_or_star_prefixes() -> None:
    assert rules.is_safe(["+9198765*"], "+919876512345")
    assert not rules.is_safe(["+919876512345"], "+919876512346")
    with pytest.raises(ValueError, match="not"):
        rules.normalise_safe_entry("9198765")


@given(st.ip_addresses(v=4).map(str) | st.from_regex(r"\A[0-9]{1,4}(\.[0-9]{1,4}){0,4}\Z"))
def test_client_ip_key_of_a_dotted_quad_is_what_ipaddress_makes_of_it(raw: str) -> None:
    try:
        expected: str | None = str(ipaddress.ip_address(raw))
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError, match="does not appear"):
            rules.client_ip_key(raw)
    else:
        assert rules.client_ip_key(raw) == expected


@given(st.text(alphabet="0123456789.", max_size=16))
def test_the_dotted_quad_shortcut_agrees_with_ipaddress(raw: str) -> None:
    try:
        expected: str | None = str(ipaddress.ip_address(raw))
    except ValueError:
        expected = None
    try:
        got: str | None = rules.client_ip_key(raw)
    except ValueError:
        got = None
    assert got == expected


@given(st.ip_addresses(v=4))
def test_every_ipv4_address_is_its_own_key(address: ipaddress.IPv4Address) -> None:
    assert rules.client_ip_key(str(address)) == str(address)
