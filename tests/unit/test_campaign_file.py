"""A campaign file read by the child process: rows, per-row reasons, counts, and refusals."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import pytest
import xlsxwriter

from switchboard.ingest.xlsx import UploadLimits, UploadTooLargeError
from switchboard.services.campaign_file import (
    CampaignFileReader,
    FileOutcome,
    FileRow,
    TextRules,
)


def _workbook(rows: Sequence[Sequence[object]]) -> io.BytesIO:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ["Country", "Mobile", "var1"])
    for number, row in enumerate(rows, start=1):
        sheet.write_row(number, 0, row)
    book.close()
    buffer.seek(0)
    return buffer


async def _read(
    upload: io.BytesIO, outcome: FileOutcome, seen: list[list[FileRow]], **limits: int
) -> None:
    reader = CampaignFileReader(
        upload,
        template="Hi ##var1##",
        rules=TextRules(sms=True, max_segments=1),
        limits=UploadLimits(**limits),
        batch_size=10,
    )
    await reader.start()
    try:
        async for batch in reader.rows():
            seen.append(batch)
    finally:
        outcome.total, outcome.invalid = reader.outcome.total, reader.outcome.invalid
        outcome.errors[:] = reader.outcome.errors


async def test_rows_come_back_in_batches_with_each_bad_rows_reason() -> None:
    rows: list[list[object]] = [[91, 9816111111 + n, f"n{n}"] for n in range(25)]
    rows[3] = [91, 123, "short"]
    rows[7] = [91, 9816111111, ""]
    rows[9] = [91, 9816111111, "€" * 200]
    outcome = FileOutcome()
    batches: list[list[FileRow]] = []
    await _read(_workbook(rows), outcome, batches)
    assert [len(batch) for batch in batches] == [10, 10, 2]
    first = batches[0][0]
    assert first[:2] == ("+919816111111", "91")
    assert (first[2].text, first[2].encoding, first[2].segments) == ("Hi n0", "GSM7", 1)
    assert (outcome.total, outcome.invalid) == (25, 3)
    assert [error["row"] for error in outcome.errors] == [5, 9, 11]
    assert "is not a valid number" in outcome.errors[0]["reason"]
    assert outcome.errors[1]["reason"] == "the message uses ##var1## but var1 has no value"
    assert outcome.errors[2]["reason"] == (
        "the text needs 3 SMS segments (GSM7); at most 1 are allowed"
    )


async def test_a_file_over_the_row_limit_is_refused_after_the_rows_before_it() -> None:
    rows = [[91, 9816111111 + n, f"n{n}"] for n in range(30)]
    outcome = FileOutcome()
    seen: list[list[FileRow]] = []
    with pytest.raises(UploadTooLargeError, match="more than 25 recipient rows"):
        await _read(_workbook(rows), outcome, seen, max_rows=25)
    assert sum(len(batch) for batch in seen) <= 20  # rows of chunks parsed before the limit


async def test_long_texts_arrive_whole_and_in_order() -> None:
    rows: list[list[object]] = [
        [91, 9816111111 + n, f"{n:04d}" + os.urandom(498).hex()] for n in range(300)
    ]
    reader = CampaignFileReader(
        _workbook(rows),
        template="##var1##",
        rules=TextRules(sms=False, max_segments=1),
        limits=UploadLimits(),
        batch_size=100,
    )
    await reader.start()
    texts = [row[2].text async for batch in reader.rows() for row in batch]
    assert [text[:4] for text in texts] == [f"{n:04d}" for n in range(300)]
    assert {len(text) for text in texts} == {1000}
    assert (reader.outcome.total, reader.outcome.invalid) == (300, 0)
