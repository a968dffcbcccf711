"""Zip archives from untrusted uploads: a pre-scan, then members read with their real size counted."""

from __future__ import annotations

import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Final

from switchboard.ingest.limits import (
    MIB,
    UploadLimits,
    UploadRejectedError,
    UploadTooLargeError,
)

CHUNK_BYTES: Final = 64 * 1024
_ZIP_MAGIC: Final = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC: Final = b"PK\x05\x06"  # also the end-of-directory record
_OLE_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_EOCD: Final = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR: Final = struct.Struct("<4sLQL")
_ZIP64_EOCD: Final = struct.Struct("<4sQ2H2L4Q")
# A central-directory record is 46 bytes plus its name and extra fields; xlsx names are short.
_CENTRAL_RECORD_BUDGET: Final = 512
_LOCAL_HEADER_BYTES: Final = 30  # a member's local header before its name
_ALLOWED_METHODS: Final = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
# What zipfile raises for a corrupt archive: besides its own and zlib's errors, EOFError (a
# truncated member), NotImplementedError (a version or compression method a corrupt header
# names) and ValueError (a seek a corrupt header sends outside the file).
_CORRUPT: Final = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError)


class UploadArchive:
    """A zip that passed the pre-scan; read members only through `read_member_chunks`."""

    def __init__(self, archive: zipfile.ZipFile, resources: ExitStack, limits: UploadLimits):
        self._zip = archive
        self._resources = resources
        self._limits = limits
        self._inflated_bytes = 0
        self.names: frozenset[str] = frozenset(archive.namelist())

    def read_member_chunks(self, name: str) -> Iterator[bytes]:
        """Yield the inflated bytes of `name` in chunks, counting what decompression produces.

        Raises UploadTooLargeError once the archive's total or this member's ratio passes its
        limit, and UploadRejectedError when the member is corrupt or shorter than declared.
        """
        info = self._zip.getinfo(name)
        ratio_cap = self._limits.max_ratio * max(info.compress_size, 1)
        produced = 0
        try:
            with self._zip.open(info) as member:
                while chunk := member.read(CHUNK_BYTES):
                    produced += len(chunk)
                    self._inflated_bytes += len(chunk)
                    if self._inflated_bytes > self._limits.max_inflated_bytes:
                        raise UploadTooLargeError(
                            "the workbook inflates to more than "
                            f"{self._limits.max_inflated_bytes // MIB} MiB"
                        )
                    if produced > self._limits.ratio_floor_bytes and produced > ratio_cap:
                        raise UploadTooLargeError(
                            f"{name} is compressed more than {self._limits.max_ratio}:1 "
                            "(a zip bomb?)"
                        )
                    if produced > info.file_size:
                        raise UploadRejectedError(f"{name} is larger than its zip header says")
                    yield chunk
        except _CORRUPT as error:
            raise UploadRejectedError(f"the workbook is corrupt: {name}: {error}") from None

    def close(self) -> None:
        self._resources.close()


def open_upload_archive(
    source: IO[bytes] | str | os.PathLike[str], limits: UploadLimits
) -> UploadArchive:
    """Pre-scan `source` (a path, or a seekable binary stream the caller keeps open).

    Checks, before anything is inflated: file size, zip and legacy-format signatures, the entry
    count and central-directory size (so zipfile never builds a million records), unsafe names
    (absolute, `..`, backslashes, symlinks), encryption, compression methods, duplicate names,
    the declared total and each member's declared ratio. Raises UploadRejectedError or
    UploadTooLargeError with the reason.
    """
    with ExitStack() as cleanup:
        stream: IO[bytes]
        if isinstance(source, str | os.PathLike):
            stream = cleanup.enter_context(Path(source).open("rb"))
        else:
            stream = source
        size = _check_envelope(stream, limits)
        try:
            archive = zipfile.ZipFile(stream)
        except _CORRUPT as error:
            raise UploadRejectedError(f"the workbook is corrupt: {error}") from None
        cleanup.callback(archive.close)
        _check_members(archive.infolist(), limits, size)
        return UploadArchive(archive, cleanup.pop_all(), limits)


def _check_envelope(stream: IO[bytes], limits: UploadLimits) -> int:
    """Check the file before zipfile reads it; answer its size."""
    size = stream.seek(0, os.SEEK_END)
    if size == 0:
        raise UploadRejectedError("the file is empty")
    if size > limits.max_file_bytes:
        raise UploadTooLargeError(
            f"the file is {size / MIB:.1f} MiB; at most {limits.max_file_bytes // MIB} MiB "
            "is allowed"
        )
    stream.seek(0)
    magic = stream.read(8)
    stream.seek(0)
    if magic == _OLE_MAGIC:
        raise UploadRejectedError(
            "this is a legacy .xls file or a password-protected workbook; "
            "save it as .xlsx without a password"
        )
    if not magic.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        raise UploadRejectedError("the file is not an .xlsx workbook (it is not a zip archive)")
    entries, directory_bytes = _read_directory_size(stream, size)
    if entries > limits.max_entries:
        raise UploadTooLargeError(
            f"the archive has {entries} entries; at most {limits.max_entries} are allowed"
        )
    if directory_bytes > limits.max_entries * _CENTRAL_RECORD_BUDGET:
        raise UploadTooLargeError("the archive's central directory is implausibly large")
    return size


def _read_directory_size(stream: IO[bytes], size: int) -> tuple[int, int]:
    """(entry count, central directory bytes) from the end record, found as zipfile finds it."""
    tail_bytes = min(size, _EOCD.size + 0xFFFF)
    stream.seek(size - tail_bytes)
    tail = stream.read(tail_bytes)
    stream.seek(0)
    at = len(tail) - _EOCD.size
    if tail[at : at + 4] != _EMPTY_ZIP_MAGIC:
        at = tail.rfind(_EMPTY_ZIP_MAGIC)
    if at < 0 or len(tail) - at < _EOCD.size:
        raise UploadRejectedError("the file is not an .xlsx workbook (no zip directory found)")
    _, _, _, _, entries, directory_bytes, _, _ = _EOCD.unpack_from(tail, at)
    if entries == 0xFFFF or directory_bytes == 0xFFFFFFFF:
        locator_at = at - _ZIP64_LOCATOR.size
        if locator_at < 0 or tail[locator_at : locator_at + 4] != b"PK\x06\x07":
            raise UploadRejectedError("the workbook is corrupt: a broken zip64 directory")
        _, _, record_offset, _ = _ZIP64_LOCATOR.unpack_from(tail, locator_at)
        if record_offset + _ZIP64_EOCD.size > size:
            raise UploadRejectedError("the workbook is corrupt: a broken zip64 directory")
        stream.seek(record_offset)
        record = stream.read(_ZIP64_EOCD.size)
        stream.seek(0)
        if not record.startswith(b"PK\x06\x06"):
            raise UploadRejectedError("the workbook is corrupt: a broken zip64 directory")
        fields = _ZIP64_EOCD.unpack(record)
        entries, directory_bytes = fields[6], fields[7]
    return entries, directory_bytes


def _check_members(infos: list[zipfile.ZipInfo], limits: UploadLimits, size: int) -> None:
    if len(infos) > limits.max_entries:
        raise UploadTooLargeError(
            f"the archive has {len(infos)} entries; at most {limits.max_entries} are allowed"
        )
    seen: set[str] = set()
    declared = 0
    for info in infos:
        name = info.filename
        if _is_unsafe_name(info.orig_filename) or _is_unsafe_name(name):
            raise UploadRejectedError(f"the archive holds an unsafe path: {name!r}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UploadRejectedError(f"the archive holds a symbolic link: {name!r}")
        if not 0 <= info.header_offset <= size - _LOCAL_HEADER_BYTES:
            raise UploadRejectedError(f"the workbook is corrupt: {name!r} starts outside the file")
        if info.flag_bits & 0x1:
            raise UploadRejectedError("the workbook is encrypted; save it without a password")
        if info.compress_type not in _ALLOWED_METHODS:
            raise UploadRejectedError(f"{name} uses an unsupported compression method")
        if name in seen:
            raise UploadRejectedError(f"the archive holds {name!r} twice")
        seen.add(name)
        declared += info.file_size
        if declared > limits.max_inflated_bytes:
            raise UploadTooLargeError(
                f"the workbook inflates to more than {limits.max_inflated_bytes // MIB} MiB"
            )
        if info.file_size > limits.ratio_floor_bytes and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            raise UploadTooLargeError(
                f"{name} is compressed more than {limits.max_ratio}:1 (a zip bomb?)"
            )


def _is_unsafe_name(name: str) -> bool:
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return True
    if len(name) > 1 and name[1] == ":":
        return True
    return ".." in name.split("/")
