"""What an uploaded spreadsheet may weigh, and the errors that refuse one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from switchboard.errors import InvalidRequestError

MIB: Final = 1024 * 1024


@dataclass(frozen=True)
class UploadLimits:
    """Bounds on one upload; the defaults fit a 1,000,000-row, 3-variable sheet (ADR 0004).

    `max_inflated_bytes` counts bytes really produced by decompression, not the sizes the zip
    headers declare. `max_ratio` applies to members larger than `ratio_floor_bytes`.
    `max_parse_s` is CPU-ish time spent inside the parser, not time the caller spends between
    rows.
    """

    max_file_bytes: int = 50 * MIB
    max_inflated_bytes: int = 512 * MIB
    max_ratio: int = 100
    ratio_floor_bytes: int = 100 * 1024
    max_entries: int = 1000
    max_rows: int = 1_000_000
    max_columns: int = 50
    max_cell_chars: int = 1000
    max_shared_strings_bytes: int = 128 * MIB
    max_parse_s: float = 120.0


class UploadRejectedError(InvalidRequestError):
    """The file as a whole is refused; `message` says why in words a customer can act on."""


class UploadTooLargeError(UploadRejectedError):
    """A size, count, ratio or time limit was exceeded (HTTP 413 rather than 422)."""
