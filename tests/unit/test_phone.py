"""Phone numbers: validation, E.164, and the calling code a staged campaign row stores."""

from __future__ import annotations

import phonenumbers
import pytest

from switchboard.domain.phone import parse_phone
from switchboard.errors import InvalidCountryCodeError, InvalidRequestError


def test_calling_codes_are_prefix_free_so_the_given_code_is_the_parsed_one() -> None:
    codes = {str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    assert not [(a, b) for a in codes for b in codes if a != b and b.startswith(a)]


@pytest.mark.parametrize(
    ("country", "mobile"),
    [
        ("91", "9800012345"),
        ("+44", "07911 123456"),
        ("1", "(201) 555-0123"),
        ("49", "+49 1512 3456789"),
        ("\u0669\u0661", "9800012345"),  # Arabic-Indic digits
    ],
)
def test_the_calling_code_of_a_number_is_the_one_in_its_e164(country: str, mobile: str) -> None:
    phone = parse_phone(country, mobile)
    assert str(int(phone.country_code)) == str(phonenumbers.parse(phone.e164).country_code)


def test_unknown_calling_code_and_bad_numbers_are_refused() -> None:
    with pytest.raises(InvalidCountryCodeError):
        parse_phone("999", "9800012345")
    with pytest.raises(InvalidRequestError, match="not a valid number"):
        parse_phone("91", "12345")
