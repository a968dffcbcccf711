"""A campaign .xlsx read on the other core: a child process parses, validates, renders and sizes
each row, and streams the results back as JSON lines.

Parsing a million rows and checking their numbers and texts costs about as much CPU as staging
them; in one process the two halves share the GIL and run one after the other. The child is
`python -m switchboard.services.campaign_file`: it reads its task (a JSON object) on stdin and
writes one JSON object per line on stdout — never pickle — so the parent stages rows while the
child reads the next ones, and the pipe bounds how far ahead it reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from switchboard.domain import encoding, templating
from switchboard.domain.phone import parse_phone
from switchboard.errors import InvalidRequestError
from switchboard.ingest.xlsx import (
    RowError,
    UploadLimits,
    UploadRejectedError,
    UploadTooLargeError,
    open_recipient_sheet,
)

MAX_REPORTED_ERRORS: Final = 1000
# A line carries up to 200 rows or 128k characters of text (at most 6 bytes each as JSON), far
# below the reader's line limit, which also bounds what it buffers ahead (twice the limit).
_ROWS_PER_LINE: Final = 200
_CHARS_PER_LINE: Final = 128 * 1024
_LINE_LIMIT: Final = 16 * 1024 * 1024
_PIPE_BYTES: Final = 1024 * 1024
_ADDRESS_SPACE_BYTES: Final = 1024 * 1024 * 1024
# The child imports switchboard from where this process found it.
_SOURCE: Final = str(Path(__file__).resolve().parents[2])
_REFUSALS: Final[dict[str, type[InvalidRequestError]]] = {
    "too_large": UploadTooLargeError,
    "rejected": UploadRejectedError,
    "invalid": InvalidRequestError,
}


@dataclass(frozen=True, slots=True)
class TextSummary:
    text: str
    encoding: str | None
    segments: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TextRules:
    """What a message text must satisfy: its channel's sizing and a registered DLT template."""

    sms: bool
    max_segments: int
    dlt_text: str | None = None
    dlt_template_id: str | None = None


def summarise(rules: TextRules, text: str) -> TextSummary:
    """The text's encoding and segments; raises InvalidRequestError when it may not be sent."""
    if rules.dlt_text is not None and not templating.matches(rules.dlt_text, text):
        raise InvalidRequestError(
            f"the text does not match registered DLT template {rules.dlt_template_id}"
        )
    if not rules.sms:
        return TextSummary(text=text, encoding=None, segments=1)
    info = encoding.analyse(text)
    if info.segments > rules.max_segments:
        raise InvalidRequestError(
            f"the text needs {info.segments} SMS segments ({info.encoding.value}); "
            f"at most {rules.max_segments} are allowed"
        )
    return TextSummary(text=text, encoding=info.encoding.value, segments=info.segments)


FileRow = tuple[str, str, TextSummary]
"""A recipient ready to stage: E.164 destination, calling code, text."""


@dataclass(slots=True)
class FileOutcome:
    """Filled in as the rows are read: the rows seen, those refused, the reported reasons."""

    total: int = 0
    invalid: int = 0
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class CampaignFileReader:
    """The child process reading one upload. `start` it as early as possible (it reads ahead
    while the caller checks the upload itself), then iterate `rows()` once, or `close()`."""

    def __init__(
        self,
        upload: IO[bytes],
        *,
        template: str,
        rules: TextRules,
        limits: UploadLimits,
        batch_size: int,
    ) -> None:
        self.outcome = FileOutcome()
        self._upload = upload
        self._task: dict[str, Any] = {
            "template": template,
            "rules": dataclasses.asdict(rules),
            "limits": dataclasses.asdict(limits),
        }
        self._batch_size = batch_size
        self._copy: str | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._finished = False

    async def start(self) -> None:
        self._copy = await asyncio.to_thread(_copy_upload, self._upload)
        paths = [_SOURCE, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        self._process = process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            __name__,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        )
        assert process.stdin is not None
        process.stdin.write(json.dumps({**self._task, "path": self._copy}).encode())
        await process.stdin.drain()
        process.stdin.close()

    async def rows(self) -> AsyncGenerator[list[FileRow], None]:
        """Batches of the upload's valid rows; `outcome` is complete once iteration ends. A
        refused file raises the child's error (UploadTooLargeError, UploadRejectedError,
        InvalidRequestError) after the batches read before it."""
        process = self._process
        assert process is not None
        assert process.stdout is not None
        batch: list[FileRow] = []
        try:
            while line := await _read_line(process.stdout):
                message = json.loads(line)
                rows = message.get("rows")
                if rows is not None:
                    batch.extend((d, c, TextSummary(t, e, s)) for d, c, t, e, s in rows)
                    while len(batch) >= self._batch_size:
                        yield batch[: self._batch_size]
                        batch = batch[self._batch_size :]
                elif "error" in message:
                    self.outcome.errors.append(message["error"])
                elif "done" in message:
                    self.outcome.total, self.outcome.invalid = message["done"]
                    self._finished = True
                    if batch:
                        yield batch
                    return
                else:
                    kind, reason = message["refused"]
                    raise _REFUSALS[kind](reason)
            raise RuntimeError(f"the file reader stopped (exit code {await process.wait()})")
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the child unless it finished, and remove the copy of the upload."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            if not self._finished:
                process.kill()  # the campaign was refused or cancelled: stop reading
            await process.wait()
        copy, self._copy = self._copy, None
        if copy is not None:
            await asyncio.to_thread(Path(copy).unlink)


async def _read_line(stream: asyncio.StreamReader) -> bytes:
    try:
        return await stream.readline()
    except ValueError:  # one row alone outgrew the line limit: a text of millions of characters
        raise UploadRejectedError(
            "a row's message is too long to send (millions of characters)"
        ) from None


def _copy_upload(upload: IO[bytes]) -> str:
    """The upload as a file of its own, for the child to open (a spooled upload may be
    in memory, or an unnamed temporary file)."""
    upload.seek(0)
    descriptor, path = tempfile.mkstemp(prefix="switchboard-upload-", suffix=".xlsx")
    with os.fdopen(descriptor, "wb") as copy:
        shutil.copyfileobj(upload, copy, 1024 * 1024)
    return path


# -- the child ------------------------------------------------------------------------------


def _read(task: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    template: str = task["template"]
    rules = TextRules(**task["rules"])
    total = invalid = reported = 0
    lines: list[tuple[str, str, str, str | None, int]] = []
    chars = 0
    with open_recipient_sheet(task["path"], UploadLimits(**task["limits"])) as sheet:
        for item in sheet:
            total += 1
            try:
                if isinstance(item, RowError):
                    raise InvalidRequestError(item.reason)
                phone = parse_phone(item.country, item.mobile)
                summary = summarise(rules, templating.render(template, item.variables))
            except InvalidRequestError as error:
                invalid += 1
                if reported < MAX_REPORTED_ERRORS:
                    reported += 1
                    send({"error": {"row": item.row_number, "reason": error.message}})
                continue
            # The calling code phonenumbers found in phone.e164: codes are prefix-free
            # (tests/unit/test_phone.py checks the metadata); int() reads any Unicode digits.
            calling_code = str(int(phone.country_code))
            lines.append(
                (phone.e164, calling_code, summary.text, summary.encoding, summary.segments)
            )
            chars += len(summary.text)
            if len(lines) >= _ROWS_PER_LINE or chars >= _CHARS_PER_LINE:
                send({"rows": lines})
                lines, chars = [], 0
    if lines:
        send({"rows": lines})
    send({"done": [total, invalid]})


def main() -> None:
    _bound_memory()
    out = sys.stdout.buffer
    _widen_pipe(out.fileno())

    def send(message: dict[str, Any]) -> None:
        # ASCII escapes: a lone surrogate in a template still travels as valid JSON.
        out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    task = json.loads(sys.stdin.buffer.read())
    try:
        _read(task, send)
    except UploadTooLargeError as error:
        send({"refused": ["too_large", error.message]})
    except UploadRejectedError as error:
        send({"refused": ["rejected", error.message]})
    except InvalidRequestError as error:
        send({"refused": ["invalid", error.message]})
    out.flush()


def _bound_memory() -> None:
    """A reader gone wrong fails its upload, not the server: the limits of ADR 0004 keep it
    near 50 MB at 1M rows, so 1 GiB of address space is far above need."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_SPACE_BYTES, _ADDRESS_SPACE_BYTES))
    except (ImportError, ValueError, OSError):
        pass  # no such limit here, or a lower one is already set


def _widen_pipe(descriptor: int) -> None:
    """Let the pipe hold ~8,000 rows: the parent reads it only between the batches it stages
    (an SQLite insert runs on the event loop), and with the default 64 KiB the child would
    wait for it most of the time instead of reading ahead."""
    try:
        import fcntl

        fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: the default size still works


if __name__ == "__main__":
    main()
