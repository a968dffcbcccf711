"""Pipedrive persons as recipients: which phone to text, and the message with their fields."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from switchboard.domain.phone import parse_phone
from switchboard.errors import InvalidRequestError

# The person fields a message may use, e.g. "Hi ##first_name##".
FIELDS: Final = ("name", "first_name", "last_name", "email")
_VARIABLE: Final = re.compile(r"##([A-Za-z_][A-Za-z0-9_]{0,40})##")
_LABEL_ORDER: Final = {"mobile": 0, "work": 1, "home": 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A selected person: the number to text (E.164) or why there is none, and its fields."""

    person_id: str
    name: str
    phone: str | None
    problem: str | None
    fields: Mapping[str, str]


def candidate(person: Mapping[str, Any], default_country_code: str | None) -> Candidate:
    """A v2 person (`phones: [{value, label, primary}]`) as a recipient."""
    person_id = str(person.get("id", ""))
    name = str(person.get("name") or "").strip() or f"Person {person_id}"
    emails = person.get("emails") or []
    email = next((str(e.get("value", "")) for e in emails if isinstance(e, dict)), "")
    values = {
        "name": name,
        "first_name": str(person.get("first_name") or "").strip(),
        "last_name": str(person.get("last_name") or "").strip(),
        "email": email,
    }
    phones = [p for p in person.get("phones") or [] if isinstance(p, dict) and p.get("value")]
    if not phones:
        return Candidate(person_id=person_id, name=name, phone=None, problem="no phone number",
                         fields=values)  # fmt: skip
    # A mobile number first (SMS), then the primary one, then in Pipedrive's order.
    ordered = sorted(
        enumerate(phones),
        key=lambda item: (_LABEL_ORDER.get(str(item[1].get("label")), 3),
                          not item[1].get("primary"), item[0]),
    )  # fmt: skip
    problem = "no phone number"
    for _, phone in ordered:
        try:
            return Candidate(person_id=person_id, name=name, fields=values, problem=None,
                             phone=to_e164(str(phone["value"]), default_country_code))  # fmt: skip
        except InvalidRequestError as error:
            problem = error.message
    return Candidate(person_id=person_id, name=name, phone=None, problem=problem, fields=values)


def to_e164(raw: str, default_country_code: str | None) -> str:
    """`+91 98765 43210`, `0091…`, or a national number with the company's default country."""
    value = raw.strip()
    if value.startswith("00"):
        value = "+" + value[2:]
    if value.startswith("+"):
        import phonenumbers

        try:
            country = str(phonenumbers.parse(value).country_code)
        except phonenumbers.NumberParseException:
            raise InvalidRequestError(f"'{raw}' is not a phone number") from None
        return parse_phone(country, value).e164
    if not default_country_code:
        raise InvalidRequestError(
            f"'{raw}' has no country code (set a default country code in the app's settings)"
        )
    return parse_phone(default_country_code, value).e164


def variables(template: str) -> set[str]:
    return {match.group(1).lower() for match in _VARIABLE.finditer(template)}


def check_template(template: str) -> None:
    if not template.strip():
        raise InvalidRequestError("type the message")
    unknown = sorted(variables(template) - set(FIELDS))
    if unknown:
        raise InvalidRequestError(
            f"unknown variable ##{unknown[0]}## (use {', '.join(f'##{f}##' for f in FIELDS)})"
        )


def render(template: str, person: Candidate) -> str:
    """The template with the person's fields; a field it uses that is empty raises."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).lower()
        text = person.fields.get(name, "")
        if not text:
            raise InvalidRequestError(f"##{name}## is empty for this person")
        return text

    return _VARIABLE.sub(value, template)
