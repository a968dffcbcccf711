"""Parsing the spec's `phoneNumbers` field ("91 9816111111, 91 7715131105, …")."""

from __future__ import annotations

import pytest

from switchboard.domain.recipients import (
    Recipient,
    RecipientError,
    parse_phone_numbers,
)
from switchboard.errors import InvalidCountryCodeError, InvalidRequestError


def fake_validate(country_code: str, national: str) -> str:
    """Accepts +91 numbers of 10 digits and +44 of 10; anything else is invalid."""
    if country_code not in {"91", "44"}:
        raise InvalidCountryCodeError(f"unknown country code {country_code}")
    if len(national) != 10:
        raise InvalidRequestError(f"{national} is not a valid number for +{country_code}")
    return f"+{country_code}{national}"


def test_spec_example_gives_two_recipients() -> None:
    parsed = parse_phone_numbers("91 9816111111, 91 7715131105,.....", fake_validate)
    assert parsed.recipients == (
        Recipient(index=0, raw="91 9816111111", e164="+919816111111"),
        Recipient(index=1, raw="91 7715131105", e164="+917715131105"),
    )
    assert parsed.errors == ()


@pytest.mark.parametrize(
    "field",
    [
        "+91 9816111111,+44 7911123456",
        "  91   9816111111 ;\t44 7911123456  ",
        "91 9816111111\n44 7911123456\n",
        "91 9816111111\r\n\r\n44 7911123456",
        "91 98161 11111, 44 (791) 112-3456",
        ",91 9816111111,,44 7911123456,",
    ],
)
def test_tolerated_spellings(field: str) -> None:
    parsed = parse_phone_numbers(field, fake_validate)
    assert [r.e164 for r in parsed.recipients] == ["+919816111111", "+447911123456"]
    assert parsed.errors == ()


def test_bad_entries_are_reported_and_the_rest_accepted() -> None:
    parsed = parse_phone_numbers(
        "91 9816111111, 919816111112, 99 1234567890, 91 12, ninety one, 91 7715131105",
        fake_validate,
    )
    assert [r.e164 for r in parsed.recipients] == ["+919816111111", "+917715131105"]
    assert [r.index for r in parsed.recipients] == [0, 5]
    assert [(e.index, e.raw) for e in parsed.errors] == [
        (1, "919816111112"),
        (2, "99 1234567890"),
        (3, "91 12"),
        (4, "ninety one"),
    ]
    reasons = [e.reason for e in parsed.errors]
    assert "with a space between them" in reasons[0]
    assert reasons[1] == "unknown country code 99"
    assert reasons[2] == "12 is not a valid number for +91"
    assert "expected '<country code> <number>'" in reasons[3]


def test_repeated_number_is_an_error_pointing_at_the_first() -> None:
    parsed = parse_phone_numbers("91 9816111111, +91 98161-11111", fake_validate)
    assert len(parsed.recipients) == 1
    assert parsed.errors == (
        RecipientError(index=1, raw="+91 98161-11111", reason="duplicate of entry 0"),
    )


def test_overlong_number_is_refused_before_validation() -> None:
    parsed = parse_phone_numbers("91 " + "9" * 40, fake_validate)
    assert parsed.errors[0].reason == "the number has more than 15 digits"


@pytest.mark.parametrize("field", ["", "  ", ", ,\n", "....."])
def test_no_entries_is_an_error(field: str) -> None:
    with pytest.raises(InvalidRequestError, match="no entries"):
        parse_phone_numbers(field, fake_validate)


def test_too_many_entries_is_an_error_for_the_whole_field() -> None:
    field = ",".join(f"91 98{n:08d}" for n in range(1001))
    with pytest.raises(InvalidRequestError, match="1001 entries; at most 1000"):
        parse_phone_numbers(field, fake_validate)
    assert len(parse_phone_numbers(field, fake_validate, max_entries=1001).recipients) == 1001


def test_validator_bugs_are_not_swallowed() -> None:
    def broken(country_code: str, national: str) -> str:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        parse_phone_numbers("91 9816111111", broken)


def test_punctuation_without_digits_is_a_missing_number() -> None:
    parsed = parse_phone_numbers("91 ( )", fake_validate)
    assert parsed.errors[0].reason == "the number is missing after the country code"
