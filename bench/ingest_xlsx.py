"""Time and peak RSS of reading a bulk-send .xlsx (Country, Mobile, var1..var3), per reader.

    .venv/bin/python bench/ingest_xlsx.py --rows 1000000
    .venv/bin/python bench/ingest_xlsx.py --rows 100000 --reader calamine --strings inline

The file is generated with xlsxwriter into a temporary directory that is always deleted. Each
reader runs in a fresh child process that reports its own peak RSS (`ru_maxrss`), so the
figure is what a server process parsing the upload in-process would reach. Results for this
machine are recorded in docs/adr/0004-xlsx-ingest.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD_TIMEOUT_S = 900


def generate(path: Path, rows: int, strings: str) -> None:
    """Excel-like content: numeric country and mobile, a text name, an amount and a date."""
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": strings == "inline"})
    sheet = workbook.add_worksheet()
    date_format = workbook.add_format({"num_format": "dd/mm/yyyy"})
    sheet.write_row(0, 0, ["Country", "Mobile", "var1", "var2", "var3"])
    start = dt.datetime(2024, 1, 1)  # noqa: DTZ001 - an Excel date has no time zone
    for row in range(1, rows + 1):
        sheet.write_number(row, 0, 91)
        sheet.write_number(row, 1, 9_800_000_000 + row)
        sheet.write_string(row, 2, f"Customer {row}")
        sheet.write_number(row, 3, row * 1.5)
        sheet.write_datetime(row, 4, start + dt.timedelta(days=row % 365), date_format)
    workbook.close()


def parse(path: Path, reader: str) -> dict[str, float]:
    started = time.perf_counter()
    rows = errors = 0
    if reader == "stream":
        from switchboard.ingest.xlsx import RowError, open_recipient_sheet

        with open_recipient_sheet(path) as sheet:
            for row in sheet:
                rows += 1
                errors += isinstance(row, RowError)
    else:
        from python_calamine import CalamineWorkbook

        workbook = CalamineWorkbook.from_path(str(path))
        for _ in workbook.get_sheet_by_index(0).iter_rows():
            rows += 1
        rows -= 1  # the header
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "rows": rows,
        "row_errors": errors,
        "seconds": round(time.perf_counter() - started, 2),
        # CPU time includes interpreter start-up; it varies less than wall time on a shared box.
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


def run_child(*arguments: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, *arguments],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=True,
    )
    loaded: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--strings", choices=["shared", "inline"], default="shared")
    parser.add_argument("--reader", choices=["stream", "calamine", "both"], default="both")
    parser.add_argument("--child-generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-parse", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-baseline", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.child_generate:
        started = time.perf_counter()
        generate(arguments.child_generate, arguments.rows, arguments.strings)
        print(json.dumps({"seconds": round(time.perf_counter() - started, 1)}))
        return
    if arguments.child_parse:
        print(json.dumps(parse(arguments.child_parse, arguments.reader)))
        return
    if arguments.child_baseline:
        import switchboard.ingest.xlsx  # noqa: F401 - the import is what is measured

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"peak_rss_mb": round(rss, 1)}))
        return

    readers = ["stream", "calamine"] if arguments.reader == "both" else [arguments.reader]
    with tempfile.TemporaryDirectory(prefix="bench-xlsx-") as directory:
        path = Path(directory) / "recipients.xlsx"
        common = ["--rows", str(arguments.rows), "--strings", arguments.strings]
        generated = run_child(*common, "--child-generate", str(path))
        print(
            f"generated {arguments.rows} rows ({arguments.strings} strings): "
            f"{path.stat().st_size / 2**20:.1f} MiB in {generated['seconds']} s"
        )
        print(f"baseline (interpreter + imports): {run_child('--child-baseline')}")
        for reader in readers:
            result = run_child(*common, "--reader", reader, "--child-parse", str(path))
            load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
            print(f"{reader}: {result} (load average {load})")


if __name__ == "__main__":
    main()
