"""The Pipedrive app's pure rules: which phone a person is texted on, ##field## texts, page tokens."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import jwt
import pytest

from switchboard.clock import FrozenClock
from switchboard.errors import AuthenticationError, InvalidRequestError
from switchboard.integrations.pipedrive import persons
from switchboard.integrations.pipedrive.client import PipedriveDomainError, check_api_domain
from switchboard.integrations.pipedrive.sessions import PageAuthenticator, Viewer, parse_ids

SECRET = "s" * 40
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _person(*phones: dict[str, object], **fields: object) -> dict[str, object]:
    return {"id": 5, "name": "Asha Rao", "phones": list(phones), **fields}


def test_a_mobile_number_is_preferred_over_the_primary_landline() -> None:
    chosen = persons.candidate(
        _person({"value": "+44 20 7946 0958", "label": "work", "primary": True},
                {"value": "+91 98765 43210", "label": "mobile", "primary": False}),
        None,
    )  # fmt: skip
    assert chosen.phone == "+919876543210"


def test_an_invalid_first_number_falls_back_to_the_next_usable_one() -> None:
    chosen = persons.candidate(
        _person({"value": "12", "label": "mobile"}, {"value": "0091 98765 43210"}), None
    )
    assert chosen.phone == "+919876543210"


def test_a_national_number_needs_the_companys_default_country_code() -> None:
    without = persons.candidate(_person({"value": "98765 43210"}), None)
    assert without.phone is None
    assert without.problem is not None
    assert "default country code" in without.problem
    assert persons.candidate(_person({"value": "98765 43210"}), "91").phone == "+919876543210"


def test_a_person_without_phones_is_reported_not_dropped() -> None:
    chosen = persons.candidate(_person(), "91")
    assert (chosen.phone, chosen.problem) == (None, "no phone number")


def test_fields_fill_the_text_once_without_rescanning_values() -> None:
    person = persons.candidate(
        _person({"value": "+919876543210"}, first_name="##last_name##", last_name="Rao"), None
    )
    assert persons.render("Hi ##first_name## ##LAST_NAME##", person) == "Hi ##last_name## Rao"


def test_an_empty_or_unknown_field_is_refused() -> None:
    person = persons.candidate(_person({"value": "+919876543210"}), None)
    with pytest.raises(InvalidRequestError, match="first_name"):
        persons.render("Hi ##first_name##", person)
    with pytest.raises(InvalidRequestError, match="##company##"):
        persons.check_template("Hi ##company##")


def test_selected_ids_must_be_person_ids_and_repeat_once() -> None:
    assert parse_ids("3, 1,3,,007") == ("3", "1", "7")
    with pytest.raises(InvalidRequestError):
        parse_ids("1,2;DROP")


def _pages() -> PageAuthenticator:
    return PageAuthenticator(extension_secret=SECRET, form_key=b"f" * 32, clock=FrozenClock(NOW))


def _link_token(secret: str = SECRET, **claims: object) -> str:
    base: dict[str, object] = {"userId": 42, "companyId": 7001,
                               "exp": int(NOW.timestamp()) + 300}  # fmt: skip
    return jwt.encode({**base, **claims}, secret, algorithm="HS256")


def test_a_pipedrive_link_token_proves_user_and_company() -> None:
    viewer = _pages().from_pipedrive(
        _link_token(), company_id="7001", user_id="42", selected_ids="1,2"
    )
    assert viewer == Viewer(company_id="7001", user_id="42", selected_ids=("1", "2"))


def _hs512_token() -> str:
    with warnings.catch_warnings():  # PyJWT warns that the key is short for SHA-512
        warnings.simplefilter("ignore")
        return jwt.encode(
            {"userId": 42, "companyId": 7001, "exp": 9999999999}, SECRET, algorithm="HS512"
        )


@pytest.mark.parametrize(
    "token",
    [
        _link_token(secret="x" * 40),
        _link_token(exp=int(NOW.timestamp()) - 120),
        jwt.encode({"userId": 42, "companyId": 7001}, SECRET, algorithm="HS256"),  # no exp
        _hs512_token(),
        "",
    ],
    ids=["forged", "expired", "no-exp", "other-algorithm", "missing"],
)
def test_bad_link_tokens_are_refused(token: str) -> None:
    with pytest.raises(AuthenticationError):
        _pages().from_pipedrive(token)


def test_a_link_token_for_another_company_than_the_url_says_is_refused() -> None:
    with pytest.raises(AuthenticationError):
        _pages().from_pipedrive(_link_token(), company_id="7002")


def test_a_form_session_round_trips_and_cannot_pass_for_a_link_token() -> None:
    pages = _pages()
    viewer = Viewer(company_id="7001", user_id="42", selected_ids=("1",))
    session = pages.form_session(viewer)
    back = pages.from_form(session)
    assert (back.company_id, back.user_id, back.selected_ids) == ("7001", "42", ("1",))
    assert back.nonce
    assert pages.from_form(pages.form_session(viewer)).nonce != back.nonce
    with pytest.raises(AuthenticationError):
        pages.from_pipedrive(session)
    with pytest.raises(AuthenticationError):
        pages.from_form(_link_token())


@pytest.mark.parametrize(
    "api_domain",
    ["https://acme.pipedrive.com", "https://acme-ltd.pipedrive.com/", "https://api.pipedrive.com"],
)
def test_a_companys_pipedrive_api_domain_is_accepted(api_domain: str) -> None:
    assert check_api_domain(api_domain) == api_domain


@pytest.mark.parametrize(
    "api_domain",
    [
        "http://acme.pipedrive.com",  # the bearer token would travel in clear
        "https://evil.example", "https://acme.pipedrive.com.evil.example",
        "https://evilpipedrive.com", "https://pipedrive.com",
        "https://acme.pipedrive.com:8443", "https://user@acme.pipedrive.com",
        "https://evil.example\\@acme.pipedrive.com", "https://acme.pipedrive.com/api?x=1",
        "https://acme.pipedrive.com/other", "https://acme.pipedrive.com#x",
        "https://127.0.0.1:9000", "http://127.0.0.1:9000", "", "not a url",
        "https://acme.pipedrive.com:99999",
    ],
)  # fmt: skip
def test_any_other_api_domain_is_refused(api_domain: str) -> None:
    with pytest.raises(PipedriveDomainError):
        check_api_domain(api_domain)


def test_a_loopback_api_domain_passes_only_when_the_setting_allows_it() -> None:
    assert check_api_domain("http://127.0.0.1:9000", allow_loopback=True) == "http://127.0.0.1:9000"
    with pytest.raises(PipedriveDomainError):
        check_api_domain("http://10.0.0.5:9000", allow_loopback=True)
