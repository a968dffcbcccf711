"""Percentiles, one line of figures per run, and the median and spread of several runs."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    value: float
    unit: str
    headline: bool = False  # shown in the median/spread summary

    def render(self) -> str:
        if math.isnan(self.value):
            return f"{self.name} n/a"
        digits = 0 if abs(self.value) >= 100 or self.unit in ("", "msgs") else 1
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} {self.value:,.{digits}f}{unit}"


@dataclass(slots=True)
class RunFigures:
    scenario: str
    db: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load_before: float = 0.0
    load_after: float = 0.0

    def add(self, name: str, value: float, unit: str = "", *, headline: bool = False) -> None:
        self.figures.append(Figure(name, float(value), unit, headline))

    def line(self) -> str:
        parts = [f"{self.scenario:<9} {self.db:<8}", *(f.render() for f in self.figures)]
        parts.append(f"load {self.load_before:.1f}→{self.load_after:.1f}")
        text = " | ".join(parts)
        return text + ("" if not self.notes else "  (" + "; ".join(self.notes) + ")")

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "db": self.db,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "figures": {f.name: [f.value, f.unit] for f in self.figures},
            "notes": self.notes,
            "load": [self.load_before, self.load_after],
        }


def summarise(runs: Sequence[RunFigures]) -> str:
    """Median and spread (min–max, and ± half the range relative to the median) per headline."""
    if not runs:
        return "no runs"
    first = runs[0]
    parts = [f"{first.scenario:<9} {first.db:<8} {len(runs)} runs"]
    for figure in first.figures:
        if not figure.headline:
            continue
        values = [f.value for run in runs for f in run.figures if f.name == figure.name]
        values = [v for v in values if not math.isnan(v)]
        if not values:
            parts.append(f"{figure.name} n/a")
            continue
        median = statistics.median(values)
        spread = (max(values) - min(values)) / 2 / median * 100 if median else 0.0
        unit = f" {figure.unit}" if figure.unit else ""
        digits = 0 if abs(median) >= 100 else 1
        parts.append(
            f"{figure.name} median {median:,.{digits}f}{unit} "
            f"[{min(values):,.{digits}f}–{max(values):,.{digits}f}, ±{spread:.0f}%]"
        )
    loads = [run.load_after for run in runs]
    parts.append(f"load {min(loads):.1f}–{max(loads):.1f}")
    return " | ".join(parts)


def machine(source: Path) -> dict[str, str]:
    """What RESULTS.md records about the machine, the versions and the code measured."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        cwd=source,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "src"],
        capture_output=True,
        text=True,
        check=False,
        cwd=source,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit + (" (+uncommitted src changes)" if dirty else ""),
        "source": str(source),
    }


def record(runs: Sequence[RunFigures], command: str, source: Path) -> Path:
    """Append the runs to bench/out/results.jsonl (gitignored) for RESULTS.md."""
    OUT.mkdir(exist_ok=True)
    path = OUT / "results.jsonl"
    with path.open("a") as handle:
        for run in runs:
            line = {**run.as_dict(), "command": command, **machine(source)}
            handle.write(json.dumps(line) + "\n")
    return path
