"""CSV exports that a spreadsheet opens without running anything a customer typed in."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Final, TextIO

# Excel, LibreOffice and Google Sheets treat a cell starting with one of these as a formula
# (=HYPERLINK(...), +cmd|..., @SUM(...)); tab, CR and NUL can hide that prefix from a viewer.
_FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r", "\x00")

CsvCell = str | int | float | Decimal | date | datetime | bool | None


def neutralize_cell(value: CsvCell) -> str:
    """The text written for one cell: a leading `'` disarms a string that could be a formula.

    Numbers, dates and booleans come from our own data and are written as they are, so a
    negative amount stays a number. None is an empty cell.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_TRIGGERS) else value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def write_csv_rows(stream: TextIO, rows: Iterable[Iterable[CsvCell]]) -> int:
    """Write `rows` to `stream` as RFC 4180 CSV, one at a time; returns how many were written.

    Open a file for this with `newline=""`, as the csv module requires.
    """
    writer = csv.writer(stream, lineterminator="\r\n")
    count = 0
    for row in rows:
        writer.writerow([neutralize_cell(value) for value in row])
        count += 1
    return count
