"""The bulk-send .xlsx reader: good files stream out rows, hostile files are refused fast."""

from __future__ import annotations

import datetime as dt
import io
import stat
import struct
import tracemalloc
import zipfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest
import xlsxwriter

from switchboard.ingest.archive import UploadArchive
from switchboard.ingest.xlsx import (
    RecipientRow,
    RowError,
    SheetHeader,
    UploadLimits,
    UploadRejectedError,
    UploadTooLargeError,
    open_recipient_sheet,
)

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
STRICT = "http://purl.oclc.org/ooxml/spreadsheetml/main"
RELATIONSHIPS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PACKAGE_RELATIONSHIPS = "http://schemas.openxmlformats.org/package/2006/relationships"
XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

CONTENT_TYPES = (
    XML_HEAD + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    "</Types>"
)
ROOT_RELS = (
    XML_HEAD + f'<Relationships xmlns="{PACKAGE_RELATIONSHIPS}">'
    f'<Relationship Id="rId1" Type="{RELATIONSHIPS}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
WORKBOOK_RELS = (
    XML_HEAD + f'<Relationships xmlns="{PACKAGE_RELATIONSHIPS}">'
    f'<Relationship Id="rId1" Type="{RELATIONSHIPS}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{RELATIONSHIPS}/sharedStrings" Target="sharedStrings.xml"/>'
    f'<Relationship Id="rId3" Type="{RELATIONSHIPS}/styles" Target="/xl/styles.xml"/>'
    "</Relationships>"
)
# Style 1 is a built-in date (14), style 2 a custom "dd/mm/yyyy", style 3 a quoted "d" that is
# not a date code.
STYLES = (
    XML_HEAD + f'<styleSheet xmlns="{MAIN}">'
    '<numFmts count="2"><numFmt numFmtId="164" formatCode="dd/mm/yyyy"/>'
    '<numFmt numFmtId="165" formatCode="0.00 &quot;d&quot;"/></numFmts>'
    '<cellStyleXfs count="1"><xf numFmtId="14"/></cellStyleXfs>'
    '<cellXfs count="4"><xf numFmtId="0"/><xf numFmtId="14"/><xf numFmtId="164"/>'
    '<xf numFmtId="165"/></cellXfs></styleSheet>'
)


def workbook_xml(*, date1904: bool = False, namespace: str = MAIN) -> str:
    flag = '<workbookPr date1904="1"/>' if date1904 else ""
    return (
        XML_HEAD + f'<workbook xmlns="{namespace}" xmlns:r="{RELATIONSHIPS}">{flag}'
        '<sheets><sheet name="Recipients" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )


def sheet_xml(*rows: str, namespace: str = MAIN) -> str:
    return (
        XML_HEAD
        + f'<worksheet xmlns="{namespace}"><sheetData>{"".join(rows)}</sheetData></worksheet>'
    )


def shared_strings_xml(strings: Sequence[str]) -> str:
    items = "".join(f"<si><t>{text}</t></si>" for text in strings)
    return XML_HEAD + f'<sst xmlns="{MAIN}">{items}</sst>'


def row(number: int, *cells: str) -> str:
    return f'<row r="{number}">{"".join(cells)}</row>'


def text(reference: str, value: str) -> str:
    return f'<c r="{reference}" t="inlineStr"><is><t>{value}</t></is></c>'


def number(reference: str, value: str, style: int | None = None) -> str:
    styled = f' s="{style}"' if style is not None else ""
    return f'<c r="{reference}"{styled}><v>{value}</v></c>'


HEADER = row(
    1,
    text("A1", "Country"),
    text("B1", "Mobile"),
    text("C1", "var1"),
    text("D1", "var2"),
)


def package(
    *rows: str,
    strings: Sequence[str] = (),
    parts: dict[str, str | bytes] | None = None,
    namespace: str = MAIN,
) -> bytes:
    """A minimal hand-written .xlsx; `parts` adds or replaces members."""
    members: dict[str, str | bytes] = {
        "[Content_Types].xml": CONTENT_TYPES,
        "_rels/.rels": ROOT_RELS,
        "xl/workbook.xml": workbook_xml(namespace=namespace),
        "xl/_rels/workbook.xml.rels": WORKBOOK_RELS,
        "xl/styles.xml": STYLES,
        "xl/sharedStrings.xml": shared_strings_xml(strings),
        "xl/worksheets/sheet1.xml": sheet_xml(*rows, namespace=namespace),
    }
    members.update(parts or {})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def read_all(
    data: bytes | Path, limits: UploadLimits | None = None
) -> tuple[SheetHeader, list[RecipientRow | RowError]]:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with open_recipient_sheet(source, limits) as sheet:
        return sheet.header, list(sheet)


def first_variables(data: bytes) -> tuple[str, ...]:
    first = read_all(data)[1][0]
    assert isinstance(first, RecipientRow)
    return first.variables


def refusal(data: bytes, limits: UploadLimits | None = None) -> UploadRejectedError:
    with pytest.raises(UploadRejectedError) as caught:
        read_all(data, limits)
    return caught.value


# --- files Excel-like tools write --------------------------------------------------------------


def test_excel_like_file_with_shared_strings_and_numeric_mobiles(tmp_path: Path) -> None:
    path = tmp_path / "recipients.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet()
    date_format = workbook.add_format({"num_format": "dd/mm/yyyy"})
    sheet.write_row(0, 0, ["Country", "Mobile", "var1", "var2", "var3"])
    sheet.write_row(1, 0, [91, 916393353683, "Asha", 1200.5])
    sheet.write_datetime(1, 4, dt.datetime(2024, 7, 1), date_format)  # noqa: DTZ001
    sheet.write_row(2, 0, ["+91", "9816111111", "Ravi", 0.1 + 0.2, "tomorrow"])
    workbook.close()

    header, rows = read_all(path)

    assert header == SheetHeader(row_number=1, variable_numbers=frozenset({1, 2, 3}))
    assert rows == [
        RecipientRow(2, "91", "916393353683", ("Asha", "1200.5", "2024-07-01")),
        RecipientRow(3, "91", "9816111111", ("Ravi", "0.3", "tomorrow")),
    ]


def test_inline_strings_from_constant_memory_writer(tmp_path: Path) -> None:
    path = tmp_path / "inline.xlsx"
    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    sheet = workbook.add_worksheet()
    sheet.write_row(0, 0, ["country", "MOBILE", "Var1"])
    for index in range(1, 301):
        sheet.write_row(index, 0, [44, 7911000000 + index, f"name {index}"])
    workbook.close()

    header, rows = read_all(path)

    assert header.variable_count == 1
    assert len(rows) == 300
    assert rows[-1] == RecipientRow(301, "44", "7911000300", ("name 300",))


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("916393353683.0", "916393353683"),
        ("9.16393353683E+11", "916393353683"),
        ("9.16393353683e11", "916393353683"),
        ("916393353683", "916393353683"),
    ],
)
def test_numeric_mobile_cells_become_digit_strings(stored: str, shown: str) -> None:
    _, rows = read_all(package(HEADER, row(2, number("A2", "91"), number("B2", stored))))
    assert rows == [RecipientRow(2, "91", shown, ("", ""))]


def test_shared_strings_with_rich_text_and_phonetic_runs() -> None:
    rich = "<r><t>Ra</t></r><r><t>vi</t></r><rPh><t>ラビ</t></rPh>"
    data = package(
        HEADER,
        row(2, number("A2", "91"), number("B2", "9816111111"), '<c r="C2" t="s"><v>0</v></c>'),
        parts={
            "xl/sharedStrings.xml": XML_HEAD + f'<sst xmlns="{MAIN}"><si>{rich}</si></sst>',
        },
    )
    assert read_all(data)[1] == [RecipientRow(2, "91", "9816111111", ("Ravi", ""))]


def test_dates_by_built_in_and_custom_format_and_1904_system() -> None:
    cells = (
        number("A2", "91"),
        number("B2", "9816111111"),
        number("C2", "45474", style=1),
        number("D2", "45474.75", style=2),
    )
    assert read_all(package(HEADER, row(2, *cells)))[1][0] == RecipientRow(
        2, "91", "9816111111", ("2024-07-01", "2024-07-01 18:00:00")
    )
    data_1904 = package(
        HEADER, row(2, *cells), parts={"xl/workbook.xml": workbook_xml(date1904=True)}
    )
    assert first_variables(data_1904)[0] == "2028-07-02"


def test_quoted_text_in_a_number_format_is_not_a_date() -> None:
    cells = (number("A2", "91"), number("B2", "9816111111"), number("C2", "12.5", style=3))
    assert first_variables(package(HEADER, row(2, *cells))) == ("12.5", "")


def test_other_cell_types() -> None:
    cells = (
        number("A2", "91"),
        number("B2", "9816111111"),
        '<c r="C2" t="b"><v>1</v></c>',
        '<c r="D2" t="str"><f>UPPER("x")</f><v>X</v></c>',
    )
    assert first_variables(package(HEADER, row(2, *cells))) == ("TRUE", "X")


def test_header_spellings_order_extra_columns_and_title_rows() -> None:
    rows = (
        row(1, text("A1", "Diwali campaign")),
        row(
            3,
            text("A3", "Name"),
            text("B3", "varl"),
            text("C3", "Mobile Number"),
            text("D3", "country_code"),
            text("E3", "VAR 3"),
        ),
        row(
            4,
            text("A4", "ignored"),
            text("B4", "Asha"),
            number("C4", "9816111111"),
            number("D4", "91"),
            text("E4", "x"),
        ),
    )
    header, recipients = read_all(package(*rows))
    assert header == SheetHeader(row_number=3, variable_numbers=frozenset({1, 3}))
    assert recipients == [RecipientRow(4, "91", "9816111111", ("Asha", "", "x"))]


def test_cells_without_references_follow_each_other() -> None:
    header = (
        '<row><c t="inlineStr"><is><t>Country</t></is></c>'
        '<c t="inlineStr"><is><t>Mobile</t></is></c></row>'
    )
    data_row = "<row><c><v>91</v></c><c><v>9816111111</v></c></row>"
    assert read_all(package(header, data_row))[1] == [RecipientRow(2, "91", "9816111111", ())]


def test_strict_open_xml_namespace_is_read() -> None:
    data = package(
        HEADER.replace("var1", "x").replace("var2", "y"),
        row(2, number("A2", "91"), number("B2", "9816111111")),
        namespace=STRICT,
    )
    assert read_all(data)[1] == [RecipientRow(2, "91", "9816111111", ())]


def test_blank_and_formatted_empty_rows_are_skipped() -> None:
    data = package(
        HEADER,
        row(2, '<c r="A2" s="1"/>', text("B2", "  ")),
        row(3),
        row(4, number("A4", "91"), number("B4", "9816111111")),
    )
    assert [r.row_number for r in read_all(data)[1]] == [4]


def test_reading_from_a_path_and_from_a_stream_agree(tmp_path: Path) -> None:
    data = package(HEADER, row(2, number("A2", "91"), number("B2", "9816111111")))
    path = tmp_path / "upload.xlsx"
    path.write_bytes(data)
    assert read_all(path) == read_all(data)


# --- per-row problems --------------------------------------------------------------------------


def test_row_problems_become_row_errors_and_other_rows_still_come() -> None:
    data = package(
        HEADER,
        row(2, number("A2", "91")),
        row(3, number("B3", "9816111111")),
        row(4, number("A4", "91"), '<c r="B4" t="e"><v>#N/A</v></c>'),
        row(5, number("A5", "91"), number("B5", "9816111111"), text("C5", "y" * 1001)),
        row(6, number("A6", "91"), number("B6", "9816111111"), '<c r="D6" t="s"><v>7</v></c>'),
        row(7, number("A7", "91"), number("B7", "9816111112"), text("C7", "ok")),
    )
    _, rows = read_all(data)
    assert rows == [
        RowError(2, "Mobile is empty"),
        RowError(3, "Country is empty"),
        RowError(4, "Mobile (cell B4) holds the Excel error #N/A"),
        RowError(5, "var1 (cell C5) has more than 1000 characters"),
        RowError(6, "var2 (cell D6) refers to a shared string that does not exist"),
        RecipientRow(7, "91", "9816111112", ("ok", "")),
    ]


def test_overlong_shared_string_is_a_row_error() -> None:
    data = package(
        HEADER,
        row(2, number("A2", "91"), number("B2", "9816111111"), '<c r="C2" t="s"><v>0</v></c>'),
        strings=["z" * 50],
    )
    _, rows = read_all(data, UploadLimits(max_cell_chars=10))
    assert rows == [RowError(2, "var1 (cell C2) has more than 10 characters")]


# --- files refused as a whole ------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_zip_bomb_is_refused_before_inflating() -> None:
    bomb = sheet_xml(HEADER) + " " * (60 * 1024 * 1024)
    error = refusal(package(parts={"xl/worksheets/sheet1.xml": bomb}))
    assert isinstance(error, UploadTooLargeError)
    assert "compressed more than 100:1" in error.message


def _set_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Rewrite `name`'s uncompressed size in its local header and its central record."""
    patched = bytearray(data)
    encoded = name.encode()
    for signature, size_at, name_at in ((b"PK\x01\x02", 24, 46), (b"PK\x03\x04", 22, 30)):
        at = patched.find(signature)
        while at != -1:
            if patched[at + name_at : at + name_at + len(encoded)] == encoded:
                struct.pack_into("<L", patched, at + size_at, size)
            at = patched.find(signature, at + 4)
    return bytes(patched)


@pytest.mark.timeout(10)
def test_zip_whose_headers_understate_sizes_is_refused() -> None:
    big = sheet_xml(HEADER, *(row(n, number(f"A{n}", "91")) for n in range(2, 20_000)))
    data = _set_declared_size(
        package(parts={"xl/worksheets/sheet1.xml": big}), "xl/worksheets/sheet1.xml", 1000
    )
    error = refusal(data)
    assert "xl/worksheets/sheet1.xml" in error.message


def test_inflated_bytes_are_counted_even_if_the_pre_scan_was_fooled() -> None:
    data = package(HEADER, row(2, number("A2", "91"), number("B2", "9816111111")))
    archive = UploadArchive(
        zipfile.ZipFile(io.BytesIO(data)), ExitStack(), UploadLimits(max_inflated_bytes=100)
    )
    with pytest.raises(UploadTooLargeError, match="inflates to more than"):
        list(archive.read_member_chunks("xl/worksheets/sheet1.xml"))


def billion_laughs() -> str:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)
    ]
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE lolz [{"".join(entities)}]>\n'
        f'<sst xmlns="{MAIN}"><si><t>&lol9;</t></si></sst>'
    )


@pytest.mark.timeout(10)
def test_billion_laughs_shared_strings_are_refused() -> None:
    data = package(HEADER, parts={"xl/sharedStrings.xml": billion_laughs()})
    assert "DTD" in refusal(data).message


def test_external_entity_in_the_sheet_is_refused() -> None:
    xxe = '<?xml version="1.0"?><!DOCTYPE w [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    sheet = xxe + f'<worksheet xmlns="{MAIN}"><sheetData>&e;</sheetData></worksheet>'
    assert "DTD" in refusal(package(parts={"xl/worksheets/sheet1.xml": sheet})).message


@pytest.mark.parametrize("name", ["../evil.xml", "/etc/evil.xml", "xl\\..\\evil.xml", "C:/evil"])
def test_zip_slip_names_are_refused(name: str) -> None:
    error = refusal(package(HEADER, parts={name: "x"}))
    assert "unsafe path" in error.message


def test_symbolic_link_entry_is_refused() -> None:
    buffer = io.BytesIO(package(HEADER))
    with zipfile.ZipFile(buffer, "a") as archive:
        link = zipfile.ZipInfo("xl/media/link")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    assert "symbolic link" in refusal(buffer.getvalue()).message


def test_macro_enabled_workbook_is_refused() -> None:
    data = package(HEADER, parts={"xl/vbaProject.bin": b"\xd0\xcf\x11\xe0 macro"})
    assert ".xlsm" in refusal(data).message


def test_macro_content_type_is_refused_even_without_the_usual_part_name() -> None:
    macro_type = CONTENT_TYPES.replace(
        "</Types>",
        '<Override PartName="/xl/code.bin" ContentType="application/vnd.ms-office.vbaProject"/>'
        "</Types>",
    )
    data = package(HEADER, parts={"[Content_Types].xml": macro_type})
    assert "macros" in refusal(data).message


def test_external_link_part_is_refused() -> None:
    data = package(HEADER, parts={"xl/externalLinks/externalLink1.xml": "<externalLink/>"})
    assert "links to other workbooks" in refusal(data).message


def test_external_worksheet_relationship_is_refused() -> None:
    rels = WORKBOOK_RELS.replace(
        'Target="worksheets/sheet1.xml"',
        'Target="https://evil.example/book.xlsx" TargetMode="External"',
    )
    data = package(HEADER, parts={"xl/_rels/workbook.xml.rels": rels})
    assert "links to other workbooks" in refusal(data).message


def test_too_many_rows_is_refused() -> None:
    rows = [row(n, number(f"A{n}", "91"), number(f"B{n}", f"98161{n:05d}")) for n in range(2, 9)]
    data = package(HEADER, *rows)
    assert len(read_all(data, UploadLimits(max_rows=7))[1]) == 7
    error = refusal(data, UploadLimits(max_rows=6))
    assert isinstance(error, UploadTooLargeError)
    assert error.message == "the sheet has more than 6 recipient rows"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"Country,Mobile\n91,9816111111\n", "not a zip archive"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "legacy .xls"),
        (b"", "the file is empty"),
        (b"PK\x03\x04" + bytes(100), "no zip directory"),
    ],
)
def test_files_that_are_not_xlsx_are_refused(data: bytes, reason: str) -> None:
    assert reason in refusal(data).message


def test_zip_that_is_not_a_workbook_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert "[Content_Types].xml is missing" in refusal(buffer.getvalue()).message


def test_empty_sheet_is_refused() -> None:
    assert refusal(package()).message == "the first worksheet is empty"


def test_sheet_without_header_is_refused() -> None:
    data = package(row(1, number("A1", "91"), number("B1", "9816111111")))
    assert refusal(data).message.startswith("no header row")


def test_sheet_without_header_in_its_first_ten_rows_is_refused_early() -> None:
    rows = [row(n, number(f"A{n}", "91")) for n in range(1, 100)]
    assert refusal(package(*rows)).message.startswith("no header row")


def test_header_without_mobile_column_is_refused() -> None:
    data = package(row(1, text("A1", "Country"), text("B1", "Phone")))
    assert refusal(data).message == "the header row (row 1) has no Mobile column"


def test_header_with_two_country_columns_is_refused() -> None:
    data = package(row(1, text("A1", "Country"), text("B1", "Mobile"), text("C1", "country")))
    assert "two Country columns: A and C" in refusal(data).message


def test_header_with_var1_and_varl_is_refused() -> None:
    data = package(
        row(1, text("A1", "Country"), text("B1", "Mobile"), text("C1", "var1"), text("D1", "varl"))
    )
    assert "two var1 columns" in refusal(data).message


def test_header_only_sheet_is_refused() -> None:
    assert "no recipient rows" in refusal(package(HEADER)).message


def test_value_beyond_the_column_limit_is_refused_but_an_empty_styled_cell_is_not() -> None:
    good = row(2, number("A2", "91"), number("B2", "9816111111"), '<c r="AY2" s="1"/>')
    assert len(read_all(package(HEADER, good))[1]) == 1
    bad = row(2, number("A2", "91"), number("B2", "9816111111"), number("AY2", "1"))
    error = refusal(package(HEADER, bad))
    assert isinstance(error, UploadTooLargeError)
    assert "AY2 is beyond the 50-column limit" in error.message


def test_file_over_the_size_limit_is_refused() -> None:
    error = refusal(package(HEADER), UploadLimits(max_file_bytes=1000))
    assert isinstance(error, UploadTooLargeError)
    assert "at most 0 MiB" in error.message or "MiB" in error.message


def test_archive_with_too_many_entries_is_refused() -> None:
    parts: dict[str, str | bytes] = {f"docProps/extra{n}.xml": "<x/>" for n in range(20)}
    error = refusal(package(HEADER, parts=parts), UploadLimits(max_entries=10))
    assert "entries; at most 10" in error.message


def test_encrypted_entry_is_refused() -> None:
    data = bytearray(package(HEADER))
    at = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, at + 8, 1)  # general-purpose flag: encrypted
    assert "encrypted" in refusal(bytes(data)).message


@pytest.mark.timeout(10)
def test_deeply_nested_xml_is_refused() -> None:
    deep = "<x>" * 1000 + "</x>" * 1000
    sheet = sheet_xml(HEADER).replace("<sheetData>", f"<sheetData>{deep}")
    assert (
        "nests elements too deeply"
        in refusal(package(parts={"xl/worksheets/sheet1.xml": sheet})).message
    )


@pytest.mark.timeout(10)
def test_huge_xml_token_is_refused_before_it_costs_quadratic_time() -> None:
    # A varied attribute value: compressible enough to upload, not enough to trip the ratio.
    value = "".join(f"{n:x}>" for n in range(400_000))
    sheet = sheet_xml(HEADER).replace("<sheetData>", f'<sheetData><x a="{value}"/>')
    error = refusal(package(parts={"xl/worksheets/sheet1.xml": sheet}))
    assert "XML token longer than 1 MiB" in error.message


def test_malformed_xml_names_the_part_and_line() -> None:
    data = package(parts={"xl/worksheets/sheet1.xml": "<worksheet><sheetData></worksheet>"})
    message = refusal(data).message
    assert message == "xl/worksheets/sheet1.xml is not well-formed XML (mismatched tag at line 1)"


def test_parse_time_limit_is_enforced() -> None:
    rows = [row(n, number(f"A{n}", "91"), number(f"B{n}", "9816111111")) for n in range(2, 3000)]
    error = refusal(package(HEADER, *rows), UploadLimits(max_parse_s=0.0))
    assert isinstance(error, UploadTooLargeError)
    assert "took over 0 s" in error.message


def test_shared_string_table_over_its_budget_is_refused() -> None:
    data = package(HEADER, strings=[f"name {n}" for n in range(1000)])
    error = refusal(data, UploadLimits(max_shared_strings_bytes=4096))
    assert "shared-string table is larger than" in error.message


def test_sheet_rows_can_be_read_only_once() -> None:
    data = package(HEADER, row(2, number("A2", "91"), number("B2", "9816111111")))
    with open_recipient_sheet(io.BytesIO(data)) as sheet:
        list(sheet)
        with pytest.raises(RuntimeError):
            iter(sheet)


def test_memory_stays_flat_while_streaming_many_rows() -> None:
    rows = [
        row(
            n,
            number(f"A{n}", "91"),
            number(f"B{n}", str(9_800_000_000 + n)),
            text(f"C{n}", f"n{n}"),
        )
        for n in range(2, 30_002)
    ]
    data = package(HEADER, *rows)
    tracemalloc.start()
    try:
        with open_recipient_sheet(io.BytesIO(data)) as sheet:
            count = sum(1 for _ in sheet)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 30_000
    assert peak < 2 * 1024 * 1024  # 30,000 rows kept would take well over 5 MB


def test_deeply_nested_shared_strings_are_refused() -> None:
    deep = "<x>" * 1000 + "</x>" * 1000
    strings = shared_strings_xml(["a"]).replace("<si>", f"<si>{deep}")
    error = refusal(package(HEADER, parts={"xl/sharedStrings.xml": strings}))
    assert "nest elements too deeply" in error.message
