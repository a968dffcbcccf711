"""The small parts of an .xlsx package: content types, relationships, workbook, styles, strings.

All XML goes through `feed_xml`, which refuses DTDs and entity declarations (billion laughs,
external entities) and any token longer than 1 MiB: Expat 2.5 buffers a whole start tag or
comment and rescans it on every chunk, so one huge token costs quadratic time and linear memory.
"""

from __future__ import annotations

import posixpath
import re
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Protocol
from xml.parsers import expat

from switchboard.ingest.archive import UploadArchive
from switchboard.ingest.limits import MIB, UploadLimits, UploadRejectedError, UploadTooLargeError

_MAX_TOKEN_BYTES: Final = 1 * MIB
# Expat keeps every open tag; SpreadsheetML nests about six deep.
MAX_DEPTH: Final = 64
_MAX_RELATIONSHIPS: Final = 10_000
# Excel allows about 64,000 cell formats per workbook.
_MAX_STYLES: Final = 100_000

_MACRO_CONTENT: Final = re.compile(r"macroEnabled|vbaProject|externalLink|macrosheet", re.I)
# Part names are case-insensitive in OPC packages.
_REFUSED_PARTS: Final = (
    (
        re.compile(r"(^|/)vbaproject\.bin$"),
        "the workbook contains macros (.xlsm); save it as .xlsx",
    ),
    (re.compile(r"^xl/macrosheets/"), "the workbook contains macro sheets; save it as .xlsx"),
    (re.compile(r"^xl/externallinks/"), "the workbook links to other workbooks; paste values"),
    (re.compile(r"^xl/workbook\.bin$"), "binary .xlsb workbooks are not supported; save as .xlsx"),
)
_SPREADSHEET_NAMESPACES: Final = (
    "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "http://purl.oclc.org/ooxml/spreadsheetml/main",  # Strict Open XML
)
_BUILTIN_DATE_FORMATS: Final = frozenset([*range(14, 23), *range(27, 37), *range(45, 48)])
_BUILTIN_DATE_FORMATS_ASIAN: Final = frozenset(range(50, 59))
# In a number format, quoted text, [colour]/[condition] brackets and escaped characters are not
# date codes; `[h]`, `[m]`, `[s]` (elapsed time) are.
_FORMAT_NOISE: Final = re.compile(r'"[^"]*"|\[(?![hms]+\])[^\]]*\]|\\.|_.|\*.', re.I)
_DATE_CODE: Final = re.compile(r"[dmyhs]", re.I)


class XmlHandler(Protocol):
    # True when start/end bound the nesting depth themselves (the worksheet's hot path);
    # otherwise feed_xml wraps them in a guard.
    bounds_depth: bool

    def start(self, name: str, attributes: dict[str, str]) -> None: ...

    def end(self, name: str) -> None: ...

    def characters(self, data: str) -> None: ...


class ParseClock:
    """Time spent inside the XML parser, across every part of one upload."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.spent_s = 0.0

    def charge(self, started: float) -> None:
        self.spent_s += time.monotonic() - started
        if self.spent_s > self.limit_s:
            raise UploadTooLargeError(f"reading the workbook took over {self.limit_s:g} s")


def feed_xml(
    archive: UploadArchive, part: str, handler: XmlHandler, clock: ParseClock
) -> Iterator[None]:
    """Parse `part` into `handler`, yielding after each chunk so rows can be drained lazily."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.buffer_size = 64 * 1024
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external_entity
    guarded = handler if handler.bounds_depth else _DepthGuard(handler, part)
    parser.StartElementHandler = guarded.start
    parser.EndElementHandler = guarded.end
    parser.CharacterDataHandler = handler.characters
    fed = 0
    for chunk in archive.read_member_chunks(part):
        started = time.monotonic()
        _parse(parser, chunk, part, final=False)
        clock.charge(started)
        fed += len(chunk)
        if fed - parser.CurrentByteIndex > _MAX_TOKEN_BYTES:
            raise UploadRejectedError(f"{part} has an XML token longer than 1 MiB")
        yield
    _parse(parser, b"", part, final=True)


def _parse(parser: expat.XMLParserType, data: bytes, part: str, *, final: bool) -> None:
    try:
        parser.Parse(data, final)
    except expat.ExpatError as error:
        reason = expat.ErrorString(error.code) if error.code is not None else str(error)
        raise UploadRejectedError(
            f"{part} is not well-formed XML ({reason} at line {error.lineno})"
        ) from None


def _refuse_doctype(*_: object) -> None:
    raise UploadRejectedError("the workbook's XML declares a DTD, which is not allowed")


def _refuse_entity(*_: object) -> None:
    raise UploadRejectedError("the workbook's XML declares entities, which is not allowed")


def _refuse_external_entity(*_: object) -> int:
    raise UploadRejectedError("the workbook's XML references an external entity")


class _DepthGuard:
    """Bounds element nesting for handlers that do not do it themselves."""

    def __init__(self, handler: XmlHandler, part: str) -> None:
        self._start = handler.start
        self._end = handler.end
        self._part = part
        self._depth = 0

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise UploadRejectedError(f"{self._part} nests elements too deeply")
        self._start(name, attributes)

    def end(self, name: str) -> None:
        self._depth -= 1
        self._end(name)


def local_name(name: str) -> str:
    return name.rpartition(" ")[2]


def spreadsheet_names(local: str) -> frozenset[str]:
    """The namespaced names Expat reports for a SpreadsheetML element, Transitional or Strict."""
    return frozenset(f"{namespace} {local}" for namespace in _SPREADSHEET_NAMESPACES)


def parse_part(archive: UploadArchive, part: str, handler: XmlHandler, clock: ParseClock) -> None:
    for _ in feed_xml(archive, part, handler, clock):
        pass


@dataclass(frozen=True)
class WorkbookParts:
    """Where the first worksheet and its companions live, and how its dates count."""

    sheet: str
    shared_strings: str | None
    styles: str | None
    date1904: bool


def locate_parts(archive: UploadArchive, clock: ParseClock) -> WorkbookParts:
    """Check the package for macros and external links, then follow the relationships."""
    for pattern, reason in _REFUSED_PARTS:
        if any(pattern.search(name.lower()) for name in archive.names):
            raise UploadRejectedError(reason)
    if "[Content_Types].xml" not in archive.names:
        raise UploadRejectedError(
            "the file is not an .xlsx workbook ([Content_Types].xml is missing)"
        )
    content_types = _AttributeCollector("ContentType")
    parse_part(archive, "[Content_Types].xml", content_types, clock)
    for content_type in content_types.values:
        if _MACRO_CONTENT.search(content_type):
            raise UploadRejectedError(
                "the workbook contains macros or external links; save it as a plain .xlsx"
            )
    package = _read_relationships(archive, "", clock)
    workbook_part = next(
        (target for kind, target in package.values() if kind.endswith("/officeDocument")), None
    )
    if workbook_part is None or workbook_part not in archive.names:
        raise UploadRejectedError("the file is not an .xlsx workbook (no workbook part)")
    workbook = _Workbook()
    parse_part(archive, workbook_part, workbook, clock)
    if workbook.first_sheet_id is None:
        raise UploadRejectedError("the workbook has no sheets")
    related = _read_relationships(archive, workbook_part, clock)
    sheet = related.get(workbook.first_sheet_id)
    if sheet is None or not sheet[0].endswith("/worksheet") or sheet[1] not in archive.names:
        raise UploadRejectedError("the first sheet is not a worksheet (a chart sheet?)")
    by_kind = {kind.rpartition("/")[2]: target for kind, target in related.values()}
    return WorkbookParts(
        sheet=sheet[1],
        shared_strings=_present(archive, by_kind.get("sharedStrings")),
        styles=_present(archive, by_kind.get("styles")),
        date1904=workbook.date1904,
    )


def _present(archive: UploadArchive, part: str | None) -> str | None:
    return part if part is not None and part in archive.names else None


class _PartHandler:
    bounds_depth = False

    def start(self, name: str, attributes: dict[str, str]) -> None:
        pass

    def end(self, name: str) -> None:
        pass

    def characters(self, data: str) -> None:
        pass


class _AttributeCollector(_PartHandler):
    def __init__(self, attribute: str) -> None:
        self._attribute = attribute
        self.values: list[str] = []

    def start(self, name: str, attributes: dict[str, str]) -> None:
        value = attributes.get(self._attribute)
        if value is not None:
            if len(self.values) >= _MAX_RELATIONSHIPS:
                raise UploadRejectedError("the workbook has too many package entries")
            self.values.append(value)


class _RelationshipCollector(_AttributeCollector):
    def __init__(self) -> None:
        super().__init__("Id")
        self.relationships: list[dict[str, str]] = []

    def start(self, name: str, attributes: dict[str, str]) -> None:
        if local_name(name) == "Relationship":
            super().start(name, attributes)
            self.relationships.append(attributes)


def _read_relationships(
    archive: UploadArchive, source_part: str, clock: ParseClock
) -> dict[str, tuple[str, str]]:
    """Relationship id → (type URI, target part name) for `source_part` ("" is the package)."""
    folder, _, file_name = source_part.rpartition("/")
    rels_part = posixpath.join(folder, "_rels", f"{file_name}.rels")
    if rels_part not in archive.names:
        raise UploadRejectedError(f"the file is not an .xlsx workbook ({rels_part} is missing)")
    collector = _RelationshipCollector()
    parse_part(archive, rels_part, collector, clock)
    related: dict[str, tuple[str, str]] = {}
    for relationship in collector.relationships:
        kind = relationship.get("Type", "")
        if relationship.get("TargetMode") == "External":
            if kind.endswith(("/externalLink", "/externalLinkPath", "/worksheet")):
                raise UploadRejectedError(
                    "the workbook links to other workbooks; paste the values instead"
                )
            continue  # hyperlinks and the like point outside; we never follow them
        target = relationship.get("Target", "")
        resolved = posixpath.normpath(
            target.lstrip("/") if target.startswith("/") else posixpath.join(folder, target)
        )
        if resolved.startswith("../") or resolved == "..":
            raise UploadRejectedError(f"{rels_part} points outside the package")
        related[relationship.get("Id", "")] = (kind, resolved)
    return related


class _Workbook(_PartHandler):
    def __init__(self) -> None:
        self.first_sheet_id: str | None = None
        self.date1904 = False

    def start(self, name: str, attributes: dict[str, str]) -> None:
        local = local_name(name)
        if local == "sheet" and self.first_sheet_id is None:
            self.first_sheet_id = next(
                (value for key, value in attributes.items() if key.endswith("relationships id")),
                None,
            )
        elif local == "workbookPr":
            self.date1904 = attributes.get("date1904", "").lower() in {"1", "true"}


def read_date_styles(archive: UploadArchive, part: str | None, clock: ParseClock) -> frozenset[int]:
    """The cell style indexes (`s` attribute) whose number format shows a date or time."""
    if part is None:
        return frozenset()
    styles = _Styles()
    parse_part(archive, part, styles, clock)
    custom_dates = {
        number for number, code in styles.custom_formats.items() if _is_date_format(code)
    }
    return frozenset(
        index
        for index, number in enumerate(styles.cell_formats)
        if number in custom_dates
        or (number not in styles.custom_formats and _is_builtin_date(number))
    )


def _is_builtin_date(number: int) -> bool:
    return number in _BUILTIN_DATE_FORMATS or number in _BUILTIN_DATE_FORMATS_ASIAN


def _is_date_format(code: str) -> bool:
    return _DATE_CODE.search(_FORMAT_NOISE.sub("", code)) is not None


class _Styles(_PartHandler):
    def __init__(self) -> None:
        self.custom_formats: dict[int, str] = {}
        self.cell_formats: list[int] = []
        self._in_cell_formats = False

    def start(self, name: str, attributes: dict[str, str]) -> None:
        local = local_name(name)
        if local == "numFmt":
            if len(self.custom_formats) >= _MAX_STYLES:
                raise UploadRejectedError("the workbook has too many number formats")
            number = _small_int(attributes.get("numFmtId"))
            if number is not None:
                self.custom_formats[number] = attributes.get("formatCode", "")
        elif local == "cellXfs":
            self._in_cell_formats = True
        elif local == "xf" and self._in_cell_formats:
            if len(self.cell_formats) >= _MAX_STYLES:
                raise UploadRejectedError("the workbook has too many cell formats")
            self.cell_formats.append(_small_int(attributes.get("numFmtId")) or 0)

    def end(self, name: str) -> None:
        if local_name(name) == "cellXfs":
            self._in_cell_formats = False


def _small_int(text: str | None) -> int | None:
    if text is None or not text.isdigit() or len(text) > 9:
        return None
    return int(text)


class SharedStrings:
    """The shared-string table, packed as UTF-8 in one buffer: ~4 bytes of overhead a string.

    A million distinct strings held as Python `str` objects would cost ~60 MB more. Strings are
    cut at `max_chars + 1` characters; the caller still sees that they are too long.
    """

    def __init__(self, max_bytes: int, max_chars: int) -> None:
        self._data = bytearray()
        self._offsets = array("I", [0])  # 32-bit offsets: max_bytes stays far below 4 GiB
        self._max_bytes = max_bytes
        self.max_chars = max_chars

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def append(self, text: str) -> None:
        self._data += text[: self.max_chars + 1].encode()
        self._offsets.append(len(self._data))
        if len(self._data) + 4 * len(self._offsets) > self._max_bytes:
            raise UploadTooLargeError(
                f"the shared-string table is larger than {self._max_bytes // MIB} MiB"
            )

    def get(self, index: int) -> str:
        return self._data[self._offsets[index] : self._offsets[index + 1]].decode()


class _SharedStringsReader(_PartHandler):
    """One entry per `<si>`: its `<t>` texts joined, phonetic (`<rPh>`) runs left out."""

    bounds_depth = True  # a million strings: the depth guard's extra call per element shows

    def __init__(self, strings: SharedStrings) -> None:
        self._strings = strings
        self._si = spreadsheet_names("si")
        self._t = spreadsheet_names("t")
        self._phonetic = spreadsheet_names("rPh")
        self._text: list[str] = []
        self._length = 0
        self._max_chars = strings.max_chars
        self._collecting = False
        self._in_phonetic = False
        self._depth = 0

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise UploadRejectedError("the shared strings nest elements too deeply")
        if name in self._t:
            self._collecting = not self._in_phonetic
        elif name in self._phonetic:
            self._in_phonetic = True
        elif name in self._si:
            self._text.clear()
            self._length = 0

    def end(self, name: str) -> None:
        self._depth -= 1
        if name in self._t:
            self._collecting = False
        elif name in self._phonetic:
            self._in_phonetic = False
        elif name in self._si:
            self._strings.append("".join(self._text))

    def characters(self, data: str) -> None:
        if self._collecting and self._length <= self._max_chars:
            self._text.append(data)
            self._length += len(data)


def read_shared_strings(
    archive: UploadArchive, part: str | None, limits: UploadLimits, clock: ParseClock
) -> SharedStrings:
    strings = SharedStrings(limits.max_shared_strings_bytes, limits.max_cell_chars)
    if part is not None:
        parse_part(archive, part, _SharedStringsReader(strings), clock)
    return strings
