"""CSV exports neutralise cells a spreadsheet would run as formulas (API-9)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.ingest.csv_export import CsvCell, neutralize_cell, write_csv_rows


def test_hyperlink_formula_is_exported_as_text() -> None:
    stream = io.StringIO()
    write_csv_rows(stream, [["name", "note"], ["Asha", '=HYPERLINK("http://evil.example","x")']])
    rows = list(csv.reader(io.StringIO(stream.getvalue())))
    assert rows[1][1] == '\'=HYPERLINK("http://evil.example","x")'


@pytest.mark.parametrize(
    "value",
    [
        "=1+1",
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1:A2)",
        "\t=1",
        "\r=1",
        "\x00=1",
        "+919816111111",
    ],
)
def test_each_formula_trigger_gets_a_quote(value: str) -> None:
    assert neutralize_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["Asha", "9816111111", " =1", "a=b", "'quoted", ""])
def test_harmless_text_is_unchanged(value: str) -> None:
    assert neutralize_cell(value) == value


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (-5, "-5"),
        (Decimal("-1.50"), "-1.50"),
        (2.5, "2.5"),
        (True, "True"),
        (None, ""),
        (date(2024, 7, 1), "2024-07-01"),
        (datetime(2024, 7, 1, 9, 30, tzinfo=UTC), "2024-07-01T09:30:00+00:00"),
    ],
)
def test_typed_values_are_written_as_they_are(value: CsvCell, written: str) -> None:
    assert neutralize_cell(value) == written


def test_rows_stream_one_at_a_time_with_crlf_and_quoting() -> None:
    def rows() -> Iterator[list[CsvCell]]:
        yield ["a,b", 'say "hi"', "line\nbreak"]
        yield [1, None, "-x"]

    stream = io.StringIO()
    assert write_csv_rows(stream, rows()) == 2
    assert stream.getvalue() == '"a,b","say ""hi""","line\nbreak"\r\n1,,\'-x\r\n'


@given(st.lists(st.lists(st.text(), max_size=4), max_size=5))
def test_no_exported_cell_starts_with_a_formula_trigger(rows: list[list[str]]) -> None:
    stream = io.StringIO()
    write_csv_rows(stream, rows)
    parsed = list(csv.reader(io.StringIO(stream.getvalue(), newline="")))
    cells = [cell for row in parsed for cell in row]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r", "\x00")) for cell in cells)
