"""The `phoneNumbers` field of a bulk send, split into recipients and per-entry errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from switchboard.errors import InvalidRequestError

NumberValidator = Callable[[str, str], str]
"""`validate(country_code, national) -> E.164`, raising InvalidRequestError for a bad number."""

MAX_RECIPIENTS: Final = 1000
# E.164 allows 15 digits with the country code; one more leaves room for a national trunk 0.
_MAX_NATIONAL_DIGITS: Final = 15

# The spec separates entries with commas ("91 9816111111, 91 7715131105,....."); pasted lists
# also arrive one per line or separated by semicolons.
_SEPARATOR: Final = re.compile(r"[,;\r\n]")
_ENTRY: Final = re.compile(r"\+?(?P<country>[0-9]{1,3})[ \t]+(?P<national>[0-9(][0-9 \t().\-]*)")
_DIGITS_ONLY: Final = re.compile(r"\+?[0-9]+")
_NATIONAL_PUNCTUATION: Final = str.maketrans("", "", " \t().-")


@dataclass(frozen=True)
class Recipient:
    """An accepted entry; `index` counts the non-empty entries from 0."""

    index: int
    raw: str
    e164: str


@dataclass(frozen=True)
class RecipientError:
    index: int
    raw: str
    reason: str


@dataclass(frozen=True)
class RecipientList:
    recipients: tuple[Recipient, ...]
    errors: tuple[RecipientError, ...]


def parse_phone_numbers(
    field: str, validate: NumberValidator, *, max_entries: int = MAX_RECIPIENTS
) -> RecipientList:
    """Split `field` into `<country code> <national number>` entries and validate each one.

    Empty entries (a trailing comma, the spec's literal "....." tail) are skipped. A bad entry
    becomes a RecipientError and the others still go through; a repeated number is an error
    pointing at its first occurrence, so nobody is charged for the same message twice. More
    than `max_entries` entries, or none at all, raises InvalidRequestError for the whole field.
    """
    entries = [entry.strip() for entry in _SEPARATOR.split(field)]
    entries = [entry for entry in entries if entry.strip(".")]
    if not entries:
        raise InvalidRequestError("phoneNumbers has no entries")
    if len(entries) > max_entries:
        raise InvalidRequestError(
            f"phoneNumbers has {len(entries)} entries; at most {max_entries} are allowed"
        )
    recipients: list[Recipient] = []
    errors: list[RecipientError] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(entries):
        try:
            e164 = _validate_entry(raw, validate)
        except InvalidRequestError as error:
            errors.append(RecipientError(index=index, raw=raw, reason=error.message))
            continue
        if e164 in first_index:
            reason = f"duplicate of entry {first_index[e164]}"
            errors.append(RecipientError(index=index, raw=raw, reason=reason))
            continue
        first_index[e164] = index
        recipients.append(Recipient(index=index, raw=raw, e164=e164))
    return RecipientList(recipients=tuple(recipients), errors=tuple(errors))


def _validate_entry(raw: str, validate: NumberValidator) -> str:
    match = _ENTRY.fullmatch(raw)
    if match is None:
        if _DIGITS_ONLY.fullmatch(raw):
            raise InvalidRequestError(
                "expected '<country code> <number>' with a space between them, e.g. 91 9876111111"
            )
        raise InvalidRequestError("expected '<country code> <number>', e.g. 91 9876111111")
    national = match.group("national").translate(_NATIONAL_PUNCTUATION)
    if not national:
        raise InvalidRequestError("the number is missing after the country code")
    if len(national) > _MAX_NATIONAL_DIGITS:
        raise InvalidRequestError(f"the number has more than {_MAX_NATIONAL_DIGITS} digits")
    return validate(match.group("country"), national)
