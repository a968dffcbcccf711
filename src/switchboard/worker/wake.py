"""Wake-ups across processes on one host: a Unix datagram socket the worker process listens on.

Within one process, accepting a message wakes the dispatcher directly. When the API runs in
other processes (`serve --processes N`), the worker would otherwise find new work only at its
next poll (`worker.poll_interval_s`, 0.5 s) — half a second added to an OTP. Each API process
sends a one-byte datagram to `worker.wake_socket` after it queues work (or a callback row); the
worker process reads them and wakes its dispatchers. Datagrams are best effort: a lost one costs
at most one poll interval, never a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path


class WakeSender:
    """Sends wake-ups to the worker process's socket (non-blocking, errors ignored)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def __call__(self) -> None:
        with contextlib.suppress(OSError):  # no listener yet, or its buffer is full: it polls
            self._socket.sendto(b"w", self._path)

    def close(self) -> None:
        self._socket.close()


class WakeListener:
    """Binds the socket in the worker process and calls `wake` for every burst of datagrams."""

    def __init__(self, path: str, wake: Callable[[], None]) -> None:
        self._path = path
        self._wake = wake
        self._socket: socket.socket | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            Path(self._path).unlink()  # left by a worker that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(self._path)
        Path(self._path).chmod(0o600)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        self._socket = sock

    def _readable(self) -> None:
        assert self._socket is not None
        while True:  # drain the burst: one wake-up is enough for all of it
            try:
                self._socket.recv(64)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
        self._wake()

    def close(self) -> None:
        if self._socket is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
        self._socket.close()
        self._socket = None
        with contextlib.suppress(FileNotFoundError):
            Path(self._path).unlink()
