"""Several API processes on one port: SO_REUSEPORT sockets, a supervisor in the first process.

One Python process serves on one core. `switchboard serve --processes N` runs N API processes
— the first and N-1 copies (`serve --no-worker`) — each binding the same address with
SO_REUSEPORT, so the kernel spreads connections over them; unless --no-worker, the delivery
workers run in one more process (`switchboard worker`), so a draining campaign never slows the
API's event loop, woken by the API processes through a Unix socket (worker/wake.py). The first
process restarts a child that dies and stops them all when it stops; each child also gets
SIGTERM from the kernel if the first process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from switchboard.observability import get_logger

log = get_logger("switchboard.processes")

_PR_SET_PDEATHSIG = 1
_RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


def listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening TCP socket; with `reuse_port`, one of several sharing the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def _resolve_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return prctl


_prctl = _resolve_prctl()  # resolved here, not between fork and exec


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel sends SIGTERM when the parent dies.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ApiProcesses:
    """Runs one process per argv (API-only `switchboard serve`, `switchboard worker`) and keeps
    them running."""

    def __init__(self, argvs: Sequence[Sequence[str]], *, grace_s: float) -> None:
        self._argvs = [list(argv) for argv in argvs]
        self._grace_s = grace_s
        self._children: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [child.pid for child in self._children]

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self._argvs[index], preexec_fn=_die_with_parent)  # noqa: S603

    def start(self) -> None:
        with self._lock:
            self._children = [self._spawn(index) for index in range(len(self._argvs))]
        # A restarted copy must be a child of a thread that lives as long as the process
        # (PR_SET_PDEATHSIG follows the thread that forked): this one does.
        self._monitor = threading.Thread(target=self._watch, name="api-processes", daemon=True)
        self._monitor.start()

    def _watch(self) -> None:
        failures = 0
        while not self._stopping.wait(0.5):
            with self._lock:
                for index, child in enumerate(self._children):
                    code = child.poll()
                    if code is None or self._stopping.is_set():
                        continue
                    delay = _RESTART_BACKOFF_S[min(failures, len(_RESTART_BACKOFF_S) - 1)]
                    log.error("process exited; restarting", pid=child.pid, code=code)
                    failures += 1
                    time.sleep(delay)
                    self._children[index] = self._spawn(index)

    def stop(self) -> None:
        """SIGTERM every copy (each drains its requests), then SIGKILL what outlives the grace."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout=15)
        with self._lock:
            children = list(self._children)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._grace_s + 5
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def child_argv(
    config: str | None, host: str, port: int, *, python: str = sys.executable
) -> list[str]:
    # --processes 1: a copy reads the same configuration, whose server.processes may be N.
    argv = [python, "-m", "switchboard", "serve", "--no-worker", "--reuse-port", "--processes", "1"]
    argv += ["--host", host, "--port", str(port)]
    if config:
        argv += ["--config", config]
    return argv


def worker_argv(config: str | None, *, python: str = sys.executable) -> list[str]:
    argv = [python, "-m", "switchboard", "worker"]
    if config:
        argv += ["--config", config]
    return argv
