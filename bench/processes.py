"""Child processes that never outlive the benchmark: own process group, killed on every exit path.

Each child gets its own session (so a kill reaches its whole group) and PR_SET_PDEATHSIG, so
even a SIGKILLed benchmark takes its server and SMSC peer with it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1
_children: list[subprocess.Popen[Any]] = []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    arguments: list[str],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[Any]:
    """Start a child in its own process group; stdout (unless piped) and stderr go to `log`."""
    handle = log.open("ab")
    process = subprocess.Popen(
        arguments,
        stdin=stdin,
        stdout=stdout if stdout is not None else handle,
        stderr=handle,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # children start before any thread does
    )
    handle.close()
    _children.append(process)
    return process


def stop(process: subprocess.Popen[Any], *, grace_s: float = 15.0) -> int | None:
    """SIGTERM the child's group, SIGKILL it after `grace_s`; returns the exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group, if any
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    if process in _children:
        _children.remove(process)
    return process.returncode


def stop_all() -> None:
    for process in list(_children):
        stop(process, grace_s=5.0)


def _on_signal(signum: int, _frame: object) -> None:
    stop_all()
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Stop every child at interpreter exit and on SIGTERM/SIGINT/SIGHUP."""
    atexit.register(stop_all)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _on_signal)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the kernel's peak RSS) of a live process, in KiB."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
