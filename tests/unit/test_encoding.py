"""GSM-7 / UCS-2 detection, segment counting, splitting and encoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.domain.encoding import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    MULTI_PART_UNITS,
    SINGLE_PART_UNITS,
    Encoding,
    TextInfo,
    analyse,
    count_units,
    decode_gsm7,
    decode_ucs2,
    encode,
    is_gsm7,
    split,
    split_for_sms,
    unit_cost,
)

GSM_CHARS = [c for c in GSM7_BASIC if c != "\x1b"] + list(GSM7_EXTENSION)
gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=700)
any_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=400) | st.text(
    alphabet=st.sampled_from(["a", "€", "Ж", "😀", "{", "é"]), max_size=400
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", TextInfo(Encoding.GSM7, 0, 1)),
        ("a" * 160, TextInfo(Encoding.GSM7, 160, 1)),
        ("a" * 161, TextInfo(Encoding.GSM7, 161, 2)),
        ("a" * 306, TextInfo(Encoding.GSM7, 306, 2)),
        ("a" * 307, TextInfo(Encoding.GSM7, 307, 3)),
        ("€" * 80, TextInfo(Encoding.GSM7, 160, 1)),
        ("€" * 81, TextInfo(Encoding.GSM7, 162, 2)),
        ("a" * 152 + "€" + "a" * 10, TextInfo(Encoding.GSM7, 164, 2)),
        ("Ж" * 70, TextInfo(Encoding.UCS2, 70, 1)),
        ("Ж" * 71, TextInfo(Encoding.UCS2, 71, 2)),
        ("😀" * 35, TextInfo(Encoding.UCS2, 70, 1)),
        ("😀" * 36, TextInfo(Encoding.UCS2, 72, 2)),
        ("Your OTP is 123456", TextInfo(Encoding.GSM7, 18, 1)),
        ("Ünïcode ç", TextInfo(Encoding.UCS2, 9, 1)),  # ï and ç are not GSM-7 (Ç is)
    ],
)
def test_analyse_counts_units_and_segments_as_billed(text: str, expected: TextInfo) -> None:
    assert analyse(text) == expected


def test_escape_is_never_split_between_parts() -> None:
    parts = split("a" * 152 + "€" + "a" * 10, Encoding.GSM7, 153)
    assert parts == ("a" * 152, "€" + "a" * 10)
    assert [len(encode(p, Encoding.GSM7)) for p in parts] == [152, 12]


def test_surrogate_pair_is_never_split_between_parts() -> None:
    parts = split("a" * 66 + "😀" + "b", Encoding.UCS2, 67)
    assert parts == ("a" * 66, "😀b")


def test_gsm7_is_encoded_unpacked_one_septet_per_octet() -> None:
    assert encode("@£$", Encoding.GSM7) == b"\x00\x01\x02"
    assert encode("{€}", Encoding.GSM7) == b"\x1b\x28\x1b\x65\x1b\x29"
    assert encode("A\n", Encoding.GSM7) == b"\x41\x0a"


def test_ucs2_is_utf16_big_endian_with_surrogates() -> None:
    assert encode("Ж😀", Encoding.UCS2) == b"\x04\x16\xd8\x3d\xde\x00"


def test_forcing_gsm7_on_a_non_gsm_text_fails() -> None:
    with pytest.raises(ValueError, match="GSM-7"):
        encode("Ж", Encoding.GSM7)


def test_split_for_sms_keeps_a_single_part_whole() -> None:
    info, parts = split_for_sms("hello")
    assert info.segments == 1
    assert parts == ("hello",)


def test_decoders_never_fail_on_garbage() -> None:
    assert decode_gsm7(b"\x1b") == " "
    assert decode_gsm7(b"\x1b\x41") == "A"  # unknown escape shows the basic character
    assert decode_ucs2(b"\x00") == "\ufffd"


@settings(max_examples=200, deadline=None)
@given(gsm_text)
def test_gsm7_round_trips_and_units_equal_encoded_octets(text: str) -> None:
    data = encode(text, Encoding.GSM7)
    assert decode_gsm7(data) == text
    assert count_units(text, Encoding.GSM7) == len(data)


@settings(max_examples=200, deadline=None)
@given(any_text)
def test_parts_rejoin_fit_and_match_the_segment_count(text: str) -> None:
    info, parts = split_for_sms(text)
    assert "".join(parts) == text
    assert len(parts) == info.segments
    per_part = (
        MULTI_PART_UNITS[info.encoding]
        if info.segments > 1
        else 160
        if info.encoding is Encoding.GSM7
        else 70
    )
    octets_per_unit = 1 if info.encoding is Encoding.GSM7 else 2
    for part in parts:
        assert len(encode(part, info.encoding)) <= per_part * octets_per_unit
    if info.encoding is Encoding.UCS2:
        assert decode_ucs2(b"".join(encode(p, Encoding.UCS2) for p in parts)) == text
        for part in parts:  # every part decodes alone: no half surrogate pair
            assert "\ufffd" not in decode_ucs2(encode(part, Encoding.UCS2)) or "\ufffd" in text


@settings(max_examples=200, deadline=None)
@given(gsm_text, st.integers(min_value=2, max_value=200))
def test_gsm7_split_never_cuts_an_escape(text: str, per_part: int) -> None:
    for part in split(text, Encoding.GSM7, per_part):
        data = encode(part, Encoding.GSM7)
        assert len(data) <= per_part
        assert decode_gsm7(data) == part  # a cut escape would decode differently


# The fast paths (translate, utf-16 length, even parts) against the definitions, per character.
mixed_text = st.text(
    alphabet=st.sampled_from([*GSM_CHARS[:20], "{", "€", "\x1b", "`", "Ж", "😀", "\ud800", "\n"]),
    max_size=500,
)


def _reference(text: str, encoding: Encoding | None = None) -> TextInfo:
    gsm7 = all((c in GSM7_BASIC and c != "\x1b") or c in GSM7_EXTENSION for c in text)
    chosen = encoding or (Encoding.GSM7 if gsm7 else Encoding.UCS2)
    units = sum(unit_cost(c, chosen) for c in text)
    if units <= SINGLE_PART_UNITS[chosen]:
        return TextInfo(chosen, units, 1)
    return TextInfo(chosen, units, len(split(text, chosen, MULTI_PART_UNITS[chosen])))


@settings(max_examples=400, deadline=None)
@given(gsm_text | any_text | mixed_text)
def test_analyse_equals_the_per_character_definition(text: str) -> None:
    assert analyse(text) == _reference(text)
    assert analyse(text, Encoding.UCS2) == _reference(text, Encoding.UCS2)
    assert is_gsm7(text) == (_reference(text).encoding is Encoding.GSM7)
    assert count_units(text, Encoding.UCS2) == sum(unit_cost(c, Encoding.UCS2) for c in text)


@settings(max_examples=300, deadline=None)
@given(gsm_text | mixed_text)
def test_forced_gsm7_counts_like_the_definition_or_refuses_the_same_character(text: str) -> None:
    try:
        expected: TextInfo | str = _reference(text, Encoding.GSM7)
    except ValueError as error:
        expected = str(error)
    try:
        actual: TextInfo | str = analyse(text, Encoding.GSM7)
    except ValueError as error:
        actual = str(error)
    assert actual == expected
