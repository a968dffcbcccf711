"""py-spy attached to the server during the measured phase, and a summary of where time went.

The raw (collapsed-stack) output is summarised per function: self time (the frame on top) and
total time (anywhere on the stack), as shares of the samples of all busy threads. A speedscope
file is written beside it for a flame view (https://www.speedscope.app).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench import processes

_OWN = "(switchboard/"  # py-spy prints paths relative to sys.path
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
    return found


class PySpy:
    """`py-spy record` on a pid until `stop()`; writes `<stem>.txt` (collapsed) and a summary."""

    def __init__(self, pid: int, stem: Path, rate_hz: int = 250) -> None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        self.raw = stem.with_suffix(".txt")
        self.summary_path = stem.with_suffix(".summary.txt")
        self._process = processes.spawn(
            [
                _py_spy(), "record", "--pid", str(pid), "--rate", str(rate_hz), "--format", "raw",
                "--threads", "--output", str(self.raw), "--nonblocking",
            ],
            log=stem.with_suffix(".log"),
        )  # fmt: skip

    def stop(self) -> str:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                processes.stop(self._process)
        if not self.raw.exists():
            return "py-spy wrote nothing (ptrace not permitted?)"
        summary = summarise(self.raw.read_text())
        self.summary_path.write_text(summary)
        return summary


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['function']} ({path})"


# Activities by a marker anywhere on the stack, first match wins. SQLAlchemy's async layer runs
# statements in greenlets whose stacks py-spy sees without their caller: counted apart.
_ACTIVITIES = (
    ("HTTP request", "RequestResponseCycle.run_asgi"),
    ("dispatcher (claim, send, settle)", "worker/dispatcher.py"),
    ("receipts from drivers", "bootstrap.py"),
    ("callback delivery", "worker/webhooks.py"),
    ("SMPP session", "channels/smpp/"),
    ("housekeeping", "_housekeeping"),
)


def _activity(frames: list[str]) -> str:
    joined = ";".join(frames)
    for name, marker in _ACTIVITIES:
        if marker in joined:
            return name
    if "sqlalchemy/" in frames[0] or "greenlet" in frames[0]:
        return "SQL execution in a greenlet (caller not visible)"
    return "other: " + _short(frames[0])


def summarise(collapsed: str, top: int = 25) -> str:
    """Top functions by self and by total share of busy samples, and the split by thread."""
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    own_total: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        if not frames:
            activities["event loop, no Python frame (I/O, uvloop)"] += count
            samples += count
            continue
        activities[_activity(frames)] += count
        samples += count
        threads[thread.split(" ")[0] if "(" not in thread else thread] += count
        self_time[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            total_time[frame] += count
        for frame in {_short(f) for f in frames if _OWN in f}:
            own_total[frame] += count
        modules[_module(frames[-1])] += count
    if not samples:
        return "no samples"

    def table(title: str, counter: Counter[Any]) -> list[str]:
        rows = [title]
        rows += [f"  {n / samples * 100:5.1f}%  {name}" for name, n in counter.most_common(top)]
        return rows

    lines = [f"{samples} busy samples"]
    lines += table("by thread:", threads)
    lines += table("by activity:", activities)
    lines += table("self time by package:", modules)
    lines += table("self time by function:", self_time)
    lines += table("total time by Switchboard function:", own_total)
    lines += table("total time by function:", total_time)
    return "\n".join(lines) + "\n"


def _module(frame: str) -> str:
    match = _FRAME.match(frame)
    path = match["file"] if match else frame
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if path.startswith("switchboard/") or "/switchboard/" in path:
        parts = path.split("switchboard/", 1)[1].split("/")
        return "switchboard." + ".".join(p.removesuffix(".py") for p in parts[:2])
    if "lib/python3" in path:
        return "stdlib " + path.split("/lib/", 1)[1].split("/")[1].removesuffix(".py")
    return path
