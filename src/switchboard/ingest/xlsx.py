"""Recipient rows from the first worksheet of an uploaded .xlsx, streamed in flat memory.

The spec's bulk-send file has a header row `Country | Mobile | var1 | var2 | …` (its sample
writes "varl"). Rows come out lazily as RecipientRow, or RowError when one row is unusable; a
problem with the file as a whole raises UploadRejectedError (UploadTooLargeError for limits),
possibly after some rows were yielded: stage the rows and commit only once iteration finishes.
Measurements behind the design: docs/adr/0004-xlsx-ingest.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from itertools import repeat
from types import TracebackType
from typing import IO, Final, NamedTuple

from switchboard.ingest.archive import UploadArchive, open_upload_archive
from switchboard.ingest.limits import UploadLimits, UploadRejectedError, UploadTooLargeError
from switchboard.ingest.workbook import (
    MAX_DEPTH,
    ParseClock,
    SharedStrings,
    feed_xml,
    locate_parts,
    read_date_styles,
    read_shared_strings,
    spreadsheet_names,
)

__all__ = [
    "RecipientRow",
    "RecipientSheet",
    "RowError",
    "SheetHeader",
    "UploadLimits",
    "UploadRejectedError",
    "UploadTooLargeError",
    "open_recipient_sheet",
]

_HEADER_SEARCH_ROWS: Final = 10
_EXCEL_MAX_ROW: Final = 1_048_576
_HEADER_NOISE: Final = re.compile(r"[\s_.\-]+")
_COUNTRY_HEADERS: Final = frozenset({"country", "countrycode"})
_MOBILE_HEADERS: Final = frozenset({"mobile", "mobilenumber", "mobileno"})
# "var" mirrors the message's ##var##; "varl" is how the spec's sample file spells var1.
_VAR_HEADER: Final = re.compile(r"var([1-9][0-9]?)?|varl")
_EPOCH_1900: Final = date(1899, 12, 30)
_EPOCH_1904: Final = date(1904, 1, 1)
_LAST_EXCEL_SERIAL: Final = 2_958_466  # 9999-12-31

_ROW, _CELL, _VALUE, _TEXT, _INLINE, _PHONETIC = range(6)
_SHEET_TAGS: Final = {
    name: tag
    for local, tag in (
        ("row", _ROW),
        ("c", _CELL),
        ("v", _VALUE),
        ("t", _TEXT),
        ("is", _INLINE),
        ("rPh", _PHONETIC),
    )
    for name in spreadsheet_names(local)
}
_TEXT_TAGS: Final = frozenset({_VALUE, _TEXT})
_BLANKS: Final = repeat("")  # the default of each `cells.get` when mapping variable columns


class RecipientRow(NamedTuple):
    """One recipient; `row_number` is the Excel row, `variables[0]` is var1.

    Immutable like a frozen dataclass, but built a million times per upload, and a tuple is
    about three times cheaper to build.
    """

    row_number: int
    country: str
    mobile: str
    variables: tuple[str, ...]


class RowError(NamedTuple):
    row_number: int
    reason: str


@dataclass(frozen=True)
class SheetHeader:
    """The header row; `variable_numbers` are the varN columns present."""

    row_number: int
    variable_numbers: frozenset[int]

    @property
    def variable_count(self) -> int:
        return max(self.variable_numbers, default=0)


@dataclass(frozen=True)
class _Columns:
    country: int
    mobile: int
    variables: tuple[int, ...]  # the column of var1, var2, …; -1 for a gap


class RecipientSheet:
    """An open upload whose header row has been found; iterate once for its rows."""

    def __init__(
        self,
        archive: UploadArchive,
        reader: _SheetReader,
        chunks: Iterator[None],
        header: SheetHeader,
    ) -> None:
        self.header = header
        self._archive = archive
        self._reader = reader
        self._chunks = chunks
        self._started = False

    def __iter__(self) -> Iterator[RecipientRow | RowError]:
        if self._started:
            raise RuntimeError("a RecipientSheet can be iterated only once")
        self._started = True
        return self._rows()

    def _rows(self) -> Iterator[RecipientRow | RowError]:
        reader = self._reader
        yield from reader.take()
        for _ in self._chunks:
            yield from reader.take()
        reader.finish()
        self.close()

    def close(self) -> None:
        self._archive.close()

    def __enter__(self) -> RecipientSheet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_recipient_sheet(
    source: IO[bytes] | str | os.PathLike[str], limits: UploadLimits | None = None
) -> RecipientSheet:
    """Check the upload and read up to its header row; raises UploadRejectedError with why.

    `source` is a path or a seekable binary stream (e.g. the spooled file of a multipart
    upload), which the caller keeps open until the sheet is closed.
    """
    limits = limits or UploadLimits()
    archive = open_upload_archive(source, limits)
    try:
        clock = ParseClock(limits.max_parse_s)
        parts = locate_parts(archive, clock)
        reader = _SheetReader(
            strings=read_shared_strings(archive, parts.shared_strings, limits, clock),
            date_styles=read_date_styles(archive, parts.styles, clock),
            date1904=parts.date1904,
            limits=limits,
        )
        chunks = feed_xml(archive, parts.sheet, reader, clock)
        for _ in chunks:
            if reader.header is not None:
                return RecipientSheet(archive, reader, chunks, reader.header)
        reader.finish()  # the whole sheet fitted in one chunk; raises if it has no header
        header = reader.header
        if header is None:
            raise _missing_header()
        return RecipientSheet(archive, reader, iter(()), header)
    except BaseException:
        archive.close()
        raise


class _SheetReader:
    """Expat callbacks for a worksheet; completed rows wait in `pending` until taken.

    This is the hot path (five callbacks per cell, a million rows), hence the flat code.
    """

    bounds_depth = True

    def __init__(
        self,
        strings: SharedStrings,
        date_styles: frozenset[int],
        date1904: bool,
        limits: UploadLimits,
    ) -> None:
        self.header: SheetHeader | None = None
        self.pending: list[RecipientRow | RowError] = []
        self._strings = strings
        self._string_count = len(strings)
        self._date_styles = frozenset(str(style) for style in date_styles)
        self._epoch = _EPOCH_1904 if date1904 else _EPOCH_1900
        self._limits = limits
        self._max_chars = limits.max_cell_chars
        self._too_long = f"has more than {limits.max_cell_chars} characters"
        self._column_index = {_column_letters(index): index for index in range(limits.max_columns)}
        self._wanted: frozenset[int] = frozenset(range(limits.max_columns))
        self._columns: _Columns | None = None
        self._depth = 0
        self._row_number = 0
        self._cells: dict[int, str] = {}
        self._problems: dict[int, str] = {}
        self._column = -1
        self._keep = False
        self._gather = False
        self._type: str | None = None
        self._style: str | None = None
        self._value = ""
        self._collecting = False
        self._in_inline = False
        self._in_phonetic = False
        self._rows_before_header = 0
        self._data_rows = 0

    def take(self) -> list[RecipientRow | RowError]:
        rows, self.pending = self.pending, []
        return rows

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise UploadRejectedError("the worksheet nests elements too deeply")
        tag = _SHEET_TAGS.get(name)
        if tag == _CELL:
            reference = attributes.get("r")
            if reference is None:
                column = self._column + 1
            else:
                letters = reference.rstrip("0123456789")
                found = self._column_index.get(letters)
                column = _parse_column(letters, reference) if found is None else found
            self._column = column
            self._value = ""
            # Cells outside the wanted columns are skipped, except that one beyond the column
            # limit must be looked at: it is refused if it holds a value.
            self._keep = self._gather = column in self._wanted
            if self._keep:
                self._type = attributes.get("t")
                self._style = attributes.get("s")
            elif column >= self._limits.max_columns:
                self._gather = True
        elif tag == _VALUE:
            self._collecting = self._gather
        elif tag == _TEXT:
            self._collecting = self._gather and self._in_inline and not self._in_phonetic
        elif tag == _ROW:
            self._start_row(attributes.get("r"))
        elif tag == _INLINE:
            self._in_inline = True
        elif tag == _PHONETIC:
            self._in_phonetic = True

    def end(self, name: str) -> None:
        self._depth -= 1
        tag = _SHEET_TAGS.get(name)
        if tag in _TEXT_TAGS:
            self._collecting = False
        elif tag == _CELL:
            if self._keep:
                text = self._value
                kind = self._type
                # The common cells, inline: a plain number and a shared string.
                if kind is None and self._style not in self._date_styles and text.isdigit():
                    self._cells[self._column] = text
                elif kind == "s" and text.isdigit() and int(text) < self._string_count:
                    value = self._strings.get(int(text))
                    if len(value) > self._max_chars:
                        self._problems[self._column] = self._too_long
                    else:
                        self._cells[self._column] = value
                else:
                    self._store_cell(text)
            elif self._value and self._column >= self._limits.max_columns:
                raise UploadTooLargeError(
                    f"cell {_column_letters(self._column)}{self._row_number} is beyond the "
                    f"{self._limits.max_columns}-column limit"
                )
        elif tag == _ROW:
            self._finish_row()
        elif tag == _INLINE:
            self._in_inline = False
        elif tag == _PHONETIC:
            self._in_phonetic = False

    def characters(self, data: str) -> None:
        if self._collecting:
            self._value += data
            if len(self._value) > self._max_chars:
                self._collecting = False

    def finish(self) -> None:
        """Called at the end of the sheet: raises if it never got a header or any recipient."""
        if self.header is None:
            if self._rows_before_header == 0:
                raise UploadRejectedError("the first worksheet is empty")
            raise _missing_header()
        if self._data_rows == 0:
            raise UploadRejectedError("the sheet has no recipient rows below its header row")

    def _start_row(self, number: str | None) -> None:
        if number is None:
            self._row_number += 1
        elif number.isdigit() and len(number) <= 7 and int(number) <= _EXCEL_MAX_ROW:
            self._row_number = int(number)
        else:
            raise UploadRejectedError(f"the sheet has a malformed row number {number[:20]!r}")
        self._column = -1

    def _store_cell(self, text: str) -> None:
        """The cells the inline fast path in `end` does not cover."""
        column = self._column
        kind = self._type
        if len(text) > self._max_chars:
            self._problems[column] = self._too_long
        elif kind is None or kind == "n":
            if self._style in self._date_styles and text:
                self._cells[column] = _date_text(text, self._epoch)
            else:
                self._cells[column] = _number_text(text)
        elif kind == "s":  # the fast path took every index that exists
            self._problems[column] = "refers to a shared string that does not exist"
        elif kind in ("inlineStr", "str", "d"):
            self._cells[column] = text
        elif kind == "b":
            self._cells[column] = "TRUE" if text == "1" else "FALSE"
        elif kind == "e":
            self._problems[column] = f"holds the Excel error {text[:20]}"
        else:
            self._problems[column] = f"has an unknown cell type {kind[:20]!r}"

    def _finish_row(self) -> None:
        cells, self._cells = self._cells, {}
        problems, self._problems = self._problems, {}
        columns = self._columns
        if columns is None:
            self._consider_header(cells)
            return
        if not problems and not "".join(cells.values()).strip():
            return  # a blank (perhaps only formatted) row
        self._data_rows += 1
        if self._data_rows > self._limits.max_rows:
            raise UploadTooLargeError(
                f"the sheet has more than {self._limits.max_rows} recipient rows"
            )
        if problems:
            self.pending.append(self._row_error(columns, problems))
            return
        country = cells.get(columns.country, "").strip().lstrip("+")
        mobile = cells.get(columns.mobile, "").strip()
        if not mobile or not country:
            reason = "Mobile is empty" if not mobile else "Country is empty"
            self.pending.append(RowError(self._row_number, reason))
            return
        variables = tuple(map(cells.get, columns.variables, _BLANKS))
        self.pending.append(RecipientRow(self._row_number, country, mobile, variables))

    def _row_error(self, columns: _Columns, problems: dict[int, str]) -> RowError:
        labels = {columns.country: "Country", columns.mobile: "Mobile"}
        for number, column in enumerate(columns.variables, start=1):
            if column >= 0:
                labels[column] = f"var{number}"
        reasons = [
            f"{labels[column]} (cell {_column_letters(column)}{self._row_number}) {reason}"
            for column, reason in sorted(problems.items())
            if column in labels
        ]
        return RowError(self._row_number, "; ".join(reasons))

    def _consider_header(self, cells: dict[int, str]) -> None:
        texts = {
            column: _HEADER_NOISE.sub("", cell).lower()
            for column, cell in cells.items()
            if cell.strip()
        }
        if not texts:
            return
        self._rows_before_header += 1
        columns = _header_columns(texts, self._row_number)
        if columns is None:
            if self._rows_before_header >= _HEADER_SEARCH_ROWS:
                raise _missing_header()
            return
        self._columns = columns
        wanted = {columns.country, columns.mobile, *columns.variables} - {-1}
        self._wanted = frozenset(wanted)
        self.header = SheetHeader(
            row_number=self._row_number,
            variable_numbers=frozenset(
                number for number, column in enumerate(columns.variables, start=1) if column >= 0
            ),
        )


def _header_columns(texts: dict[int, str], row: int) -> _Columns | None:
    """The columns of a header row, None if this row is not one; raises on an ambiguous one."""
    country = [column for column, text in texts.items() if text in _COUNTRY_HEADERS]
    mobile = [column for column, text in texts.items() if text in _MOBILE_HEADERS]
    if not country and not mobile:
        return None
    for name, found in (("Country", country), ("Mobile", mobile)):
        if len(found) > 1:
            letters = " and ".join(_column_letters(column) for column in found)
            raise UploadRejectedError(
                f"the header row (row {row}) has two {name} columns: {letters}"
            )
        if not found:
            raise UploadRejectedError(f"the header row (row {row}) has no {name} column")
    variables: dict[int, int] = {}
    for column, text in texts.items():
        match = _VAR_HEADER.fullmatch(text)
        if match is None:
            continue  # other columns (a name, notes) are allowed and ignored
        number = int(match.group(1) or 1)
        if number in variables:
            raise UploadRejectedError(f"the header row (row {row}) has two var{number} columns")
        variables[number] = column
    return _Columns(
        country=country[0],
        mobile=mobile[0],
        variables=tuple(variables.get(n, -1) for n in range(1, max(variables, default=0) + 1)),
    )


def _missing_header() -> UploadRejectedError:
    return UploadRejectedError(
        "no header row: the sheet must start with a row naming the Country and Mobile columns "
        "(and var1, var2, … for the message's ##var1##, ##var2##, …)"
    )


def _column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def _parse_column(letters: str, reference: str) -> int:
    if not letters or len(letters) > 3 or not letters.isascii() or not letters.isalpha():
        raise UploadRejectedError(f"the sheet has a malformed cell reference {reference[:20]!r}")
    index = 0
    for letter in letters.upper():
        index = index * 26 + ord(letter) - 64
    return index - 1


def _number_text(text: str) -> str:
    """A number as Excel shows it in General format: 916393353683.0 → "916393353683"."""
    if text.isdigit() and text.isascii():
        return text
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    if not number.is_finite() or not -20 <= number.adjusted() <= 20:
        return text
    # Excel keeps 15 significant digits; 0.30000000000000004 is shown as 0.3.
    number = round(number, 14 - number.adjusted())
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


@lru_cache(maxsize=4096)  # a sheet holds few distinct dates, repeated on many rows
def _date_text(text: str, epoch: date) -> str:
    """A date-formatted serial number as ISO 8601: 45293 → "2024-01-02"."""
    try:
        serial = float(text)
    except ValueError:
        return text
    if not 0 <= serial < _LAST_EXCEL_SERIAL:
        return _number_text(text)
    days = int(serial)
    seconds = round((serial - days) * 86400)
    if seconds == 86400:
        days, seconds = days + 1, 0
    if epoch == _EPOCH_1900 and days < 61:
        days += 1  # Excel counts a 29 February 1900 that never was; serials below it shift
    clock = f"{seconds // 3600:02}:{seconds // 60 % 60:02}:{seconds % 60:02}"
    if serial < 1:
        return clock
    day = (epoch + timedelta(days=days)).isoformat()
    return day if seconds == 0 else f"{day} {clock}"
