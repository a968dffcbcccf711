"""`python -m bench.run SCENARIO --db sqlite|postgres [--runs 3] [--quick] [--profile]`.

Each run deploys from scratch (fresh database, fresh server process), measures, tears down and
prints one line of figures; several runs end with a line of medians and spreads. Every run is
appended to bench/out/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from bench import processes
from bench.deployment import Source
from bench.figures import RunFigures, machine, record, summarise
from bench.loop import run_loop
from bench.scenarios import SCENARIOS, Options


def _override(raw: str) -> tuple[str, Any]:
    name, _, value = raw.partition("=")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--count", type=int, help="requests (or recipients) per run")
    parser.add_argument("--time-limit-s", type=float, help="bound of the measured phase")
    parser.add_argument("--no-worker", action="store_true", help="accept: serve the API only")
    parser.add_argument("--profile", action="store_true", help="py-spy the server (bench/out/)")
    parser.add_argument(
        "--src",
        type=Path,
        help="run the Switchboard of another checkout (a git worktree at a fixed commit)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=JSON",
        help="override a server config key, e.g. --set server.access_log=false",
    )
    arguments = parser.parse_args()
    if not 1 <= arguments.runs <= 20:
        parser.error("--runs must be 1-20")

    processes.install_cleanup()
    if arguments.src is not None:
        if not (arguments.src / "src" / "switchboard").is_dir():
            parser.error(f"--src {arguments.src}: no src/switchboard there")
        Source.directory = arguments.src.resolve()
    options = Options(
        quick=arguments.quick,
        concurrency=arguments.concurrency,
        no_worker=arguments.no_worker,
        profile=arguments.profile,
        count=arguments.count,
        time_limit_s=arguments.time_limit_s,
        overrides=tuple(_override(raw) for raw in arguments.set),
    )
    scenarios = list(SCENARIOS) if arguments.scenario == "all" else [arguments.scenario]
    databases = ["sqlite", "postgres"] if arguments.db == "both" else [arguments.db]
    command = shlex.join(["python", "-m", "bench.run", *sys.argv[1:]])
    about = machine(Source.directory)
    print(
        f"# {command}  (code {about['commit']}, load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    for name in scenarios:
        for db in databases:
            runs: list[RunFigures] = []
            for number in range(1, arguments.runs + 1):
                figures = run_loop(SCENARIOS[name](db, options))
                runs.append(figures)
                print(f"run {number}/{arguments.runs}  {figures.line()}", flush=True)
            record(runs, command, Source.directory)
            if len(runs) > 1:
                print(f"SUMMARY  {summarise(runs)}", flush=True)


if __name__ == "__main__":
    main()
