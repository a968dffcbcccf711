"""Fuzzing the .xlsx reader: whatever the bytes, it yields rows and row errors or refuses the file."""

from __future__ import annotations

import io
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.ingest.test_xlsx import HEADER, number, package, row, text

from switchboard.ingest.xlsx import (
    RecipientRow,
    RowError,
    UploadLimits,
    UploadRejectedError,
    open_recipient_sheet,
)

LIMITS = UploadLimits(max_parse_s=5.0)
GOOD = package(
    HEADER,
    row(2, text("A2", "91"), number("B2", "9876543210"), text("C2", "Asha")),
    row(3, text("A3", "44"), number("B3", "7700900123"), text("C3", "Ben")),
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read(data: bytes) -> list[RecipientRow | RowError]:
    """Everything the reader makes of `data`; only UploadRejectedError may escape."""
    refusal: UploadRejectedError | None = None
    rows: list[RecipientRow | RowError] = []
    try:
        with open_recipient_sheet(io.BytesIO(data), LIMITS) as sheet:
            rows = list(sheet)
    except UploadRejectedError as refused:
        refusal = refused
    if refusal is not None:
        assert refusal.message  # a refusal always says why
        return []
    assert all(isinstance(item, RecipientRow | RowError) for item in rows)
    return rows


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_are_refused_with_a_reason(data: bytes) -> None:
    assert _read(data) == []


@FUZZ
@given(st.data())
def test_flipped_bytes_in_a_good_file_never_escape_as_other_errors(data: st.DataObject) -> None:
    corrupted = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(corrupted) - 1))
        corrupted[position] = data.draw(st.integers(0, 255))
    _read(bytes(corrupted))


@FUZZ
@given(st.integers(min_value=0, max_value=len(GOOD)))
def test_a_truncated_file_is_refused(cut: int) -> None:
    if cut < len(GOOD):
        assert _read(GOOD[:cut]) == []


_XML_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)


@FUZZ
@given(sheet=_XML_TEXT, strings=_XML_TEXT, workbook=st.booleans())
def test_hostile_part_contents_never_escape_as_other_errors(
    sheet: str, strings: str, workbook: bool
) -> None:
    parts: dict[str, str | bytes] = {
        "xl/worksheets/sheet1.xml": f"<worksheet><sheetData>{sheet}</sheetData></worksheet>",
        "xl/sharedStrings.xml": f"<sst>{strings}</sst>",
    }
    if workbook:
        parts["xl/workbook.xml"] = sheet
    _read(package(parts=parts))


@FUZZ
@given(
    st.lists(  # NUL ends a zip name, and zipfile cannot write a name it empties
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12),
        min_size=1,
        max_size=6,
        unique=True,
    ),
    st.binary(max_size=64),
)
def test_archives_with_odd_member_names_are_refused_or_read(
    names: list[str], content: bytes
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, content)
    _read(buffer.getvalue())


def test_the_fuzzed_base_file_is_itself_readable() -> None:
    rows = _read(GOOD)
    assert [r.mobile for r in rows if isinstance(r, RecipientRow)] == ["9876543210", "7700900123"]


def test_a_central_directory_naming_a_zip_version_python_cannot_read_is_refused() -> None:
    """Found by the flipped-bytes fuzzer: zipfile raised NotImplementedError ("zip file version
    6.4") for a corrupt "version needed to extract", which escaped as a 500."""
    corrupted = bytearray(GOOD)
    entry = corrupted.index(b"PK\x01\x02")  # the first central directory record
    corrupted[entry + 6 : entry + 8] = (64).to_bytes(2, "little")
    with (
        pytest.raises(UploadRejectedError, match="corrupt"),
        open_recipient_sheet(io.BytesIO(bytes(corrupted)), LIMITS) as sheet,
    ):
        list(sheet)


def test_a_member_whose_header_offset_points_outside_the_file_is_refused() -> None:
    """Found by the flipped-bytes fuzzer in CI: a corrupt "relative offset of local header" made
    zipfile seek before the file's start, and its ValueError escaped as a 500."""
    corrupted = bytearray(GOOD)
    entry = corrupted.index(b"PK\x01\x02")  # the first central directory record
    corrupted[entry + 42 : entry + 46] = (len(GOOD) + 1000).to_bytes(4, "little")
    with pytest.raises(UploadRejectedError, match="starts outside the file"):
        open_recipient_sheet(io.BytesIO(bytes(corrupted)), LIMITS)
