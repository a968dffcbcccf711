"""##varN## rendering and DLT template matching."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.domain.templating import (
    DltSlot,
    compile_dlt_template,
    matches,
    placeholders,
    render,
)
from switchboard.errors import InvalidRequestError

SPEC_SAMPLE = "Hello ##var##, your balance is ##var2## on date ##var3##."


def test_spec_sample_var_without_number_is_var1() -> None:
    rendered = render(SPEC_SAMPLE, ["Asha", "₹1,200", "2024-07-01"])
    assert rendered == "Hello Asha, your balance is ₹1,200 on date 2024-07-01."


def test_placeholders_lists_numbers_used() -> None:
    assert placeholders(SPEC_SAMPLE) == {1, 2, 3}
    assert placeholders("##VAR1## and ##Var12## and ##var1##") == {1, 12}
    assert placeholders("no placeholders, # ## ### #var1#") == set()


def test_placeholders_are_case_insensitive() -> None:
    assert render("Hi ##VAR1##, ##Var2##", ["a", "b"]) == "Hi a, b"


def test_missing_variable_names_the_placeholder() -> None:
    with pytest.raises(InvalidRequestError, match=r"##var3## but var3 has no value"):
        render(SPEC_SAMPLE, ["Asha", "100"])


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_blank_variable_counts_as_missing(blank: str) -> None:
    with pytest.raises(InvalidRequestError, match="var2"):
        render(SPEC_SAMPLE, ["Asha", blank, "today"])


def test_unused_variables_are_ignored() -> None:
    assert render("Hi ##var2##", ["", "Ravi", "extra"]) == "Hi Ravi"


def test_values_are_not_rescanned_for_placeholders() -> None:
    assert render("##var1##/##var2##", ["##var2##", "x"]) == "##var2##/x"


def test_non_placeholders_stay_text() -> None:
    text = "##var0## ##var## ##varx## ##var12345## #var1#"
    assert render(text, ["one"]) == "##var0## one ##varx## ##var12345## #var1#"


@given(st.lists(st.text(min_size=1).filter(str.strip), min_size=1, max_size=5))
def test_each_placeholder_becomes_its_value(values: list[str]) -> None:
    template = "|".join(f"##var{n}##" for n in range(1, len(values) + 1))
    assert render(template, values) == "|".join(values)


OTP_TEMPLATE = "Your OTP for {#var#} is {#numeric#}. Do not share it. - ACME"


def test_dlt_message_with_filled_variables_matches() -> None:
    assert matches(OTP_TEMPLATE, "Your OTP for login is 482913. Do not share it. - ACME")


def test_dlt_empty_var_is_allowed_but_typed_variable_needs_a_value() -> None:
    assert matches(OTP_TEMPLATE, "Your OTP for  is 4. Do not share it. - ACME")
    assert not matches(OTP_TEMPLATE, "Your OTP for login is . Do not share it. - ACME")


@pytest.mark.parametrize(
    "message",
    [
        "Your OTP for login is 48291a. Do not share it. - ACME",  # letter in numeric
        "Your OTP for login is 482913. Do not share it - ACME",  # punctuation changed
        "Your OTP for login is 482913.  Do not share it. - ACME",  # whitespace changed
        "your OTP for login is 482913. Do not share it. - ACME",  # case changed
        "Your OTP for login is 482913. Do not share it. - ACME!",  # trailing text
        "Your OTP for " + "x" * 31 + " is 1. Do not share it. - ACME",  # var over 30 chars
    ],
)
def test_dlt_message_that_differs_does_not_match(message: str) -> None:
    assert not matches(OTP_TEMPLATE, message)


def test_dlt_variable_may_hold_exactly_thirty_characters() -> None:
    assert matches(OTP_TEMPLATE, "Your OTP for " + "x" * 30 + " is 1. Do not share it. - ACME")


@pytest.mark.parametrize(
    ("template", "good", "bad"),
    [
        ("Ref {#alphanumeric#}.", "Ref AB12 CD.", "Ref AB-12."),
        ("Track {#url#} now", "Track https://a.example/x?y=1 now", "Track a b now"),
        ("Call {#cbn#}", "Call +91-1800-123", "Call 1800 123"),
        ("App {#urlott#}", "App https://play.example/app", "App "),
        ("Mail {#email#}", "Mail a@b.example", "Mail a @b"),
    ],
)
def test_dlt_typed_variables_restrict_their_characters(template: str, good: str, bad: str) -> None:
    assert matches(template, good)
    assert not matches(template, bad)


def test_dlt_unknown_and_uppercase_tags_are_literal_text() -> None:
    assert matches("Hi {#name#} {#VAR#}", "Hi {#name#} {#VAR#}")
    assert not matches("Hi {#name#}", "Hi Ravi")


def test_dlt_template_text_is_not_a_regex() -> None:
    assert matches("Pay (Rs.) {#numeric#}*", "Pay (Rs.) 100*")
    assert not matches("Pay (Rs.) {#numeric#}*", "Pay (RsX) 100*")


def test_dlt_compiled_template_exposes_parts_and_anchored_pattern() -> None:
    template = compile_dlt_template("A {#var#}!", max_variable_chars=5)
    assert template.parts == ("A ", DltSlot(kind="var", max_chars=5), "!")
    assert template.pattern.fullmatch("A hello!")
    assert not template.pattern.match("A toolong!")
    assert template.pattern.pattern.startswith("^")


def test_dlt_adjacent_variables_split_a_long_value() -> None:
    assert matches("Link {#var#}{#var#}", "Link " + "y" * 55)
    assert not matches("Link {#var#}{#var#}", "Link " + "y" * 61)


def test_dlt_near_miss_on_many_variables_is_fast() -> None:
    # The equivalent backtracking regex takes minutes on this input.
    template = compile_dlt_template("{#var#} " * 20 + "end")
    started = time.perf_counter()
    assert not template.matches(" " * 400 + "nope")
    assert time.perf_counter() - started < 1.0


_SMALL_TEXT = st.text(alphabet="ab 1.", max_size=8)


@given(
    st.lists(
        st.one_of(_SMALL_TEXT, st.sampled_from(["{#var#}", "{#numeric#}", "{#alphanumeric#}"])),
        max_size=4,
    ),
    st.text(alphabet="ab 1.", max_size=16),
)
def test_dlt_matcher_agrees_with_its_regex(pieces: list[str], message: str) -> None:
    template = compile_dlt_template("".join(pieces), max_variable_chars=3)
    expected = re.fullmatch(template.pattern, message) is not None
    assert template.matches(message) is expected


def _render_with_regex(template: str, variables: list[str]) -> str:
    """The definition: one regex substitution pass, the first empty placeholder refused."""

    def substitute(match: re.Match[str]) -> str:
        number = int(match.group(1) or 1)
        value = variables[number - 1] if number <= len(variables) else ""
        if not value.strip():
            raise InvalidRequestError(
                f"the message uses ##var{number}## but var{number} has no value"
            )
        return value

    return re.sub(r"##var([1-9][0-9]{0,3})?##", substitute, template, flags=re.IGNORECASE)


_pieces = st.sampled_from(["Hi ", "##var##", "##var1##", "##VAR2##", "##var3##", "##var12##",
                           "##var0##", "#", "##", " ", "x", "€", "##var10000##"])  # fmt: skip


@given(
    st.lists(_pieces, max_size=12).map("".join),
    st.lists(st.sampled_from(["a", "", " ", "##var2##", "ü"]), max_size=4),
)
def test_render_equals_one_regex_substitution_pass(template: str, variables: list[str]) -> None:
    def outcome(render_with: Callable[[str, list[str]], str]) -> str:
        try:
            return render_with(template, variables)
        except InvalidRequestError as error:
            return f"refused: {error.message}"

    assert outcome(render) == outcome(_render_with_regex)
