"""Fixtures for SMPP integration tests: the npm SMSC peer (installed once) and the simulator."""

from __future__ import annotations

import select
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from switchboard.channels.smpp.simulator import SmscSimulator

from .peers import NpmSmsc

PEER_DIR = Path(__file__).resolve().parents[2] / "peers" / "smsc"


@pytest.fixture(scope="session")
def npm_smsc_dir() -> Path:
    """tests/peers/smsc with its node_modules (`npm ci` once if missing)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed, so the npm SMSC peer cannot run")
    if not (PEER_DIR / "node_modules" / "smpp").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("node is installed but npm is not: cannot install tests/peers/smsc")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=PEER_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed in {PEER_DIR}:\n{result.stderr[-2000:]}")
    return PEER_DIR


@pytest.fixture
def npm_smsc_factory(npm_smsc_dir: Path, tmp_path: Path) -> Iterator[Callable[..., NpmSmsc]]:
    """Start `node server.js --port 0 …extra args` on 127.0.0.1; every peer is killed at teardown."""
    node = shutil.which("node")
    assert node is not None
    started: list[NpmSmsc] = []

    def start(*extra: str) -> NpmSmsc:
        log_path = tmp_path / f"npm-smsc-{len(started)}.jsonl"
        stderr = (tmp_path / f"npm-smsc-{len(started)}.err").open("w")
        process = subprocess.Popen(
            [node, "server.js", "--port", "0", "--log", str(log_path), *extra],
            cwd=npm_smsc_dir,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        stderr.close()
        peer = NpmSmsc(process=process, port=0, log_path=log_path)
        started.append(peer)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 15.0)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("LISTENING "):
            peer.stop()
            pytest.fail(f"npm SMSC peer did not start: {line!r}")
        peer.port = int(line.split()[1])
        return peer

    yield start
    for peer in started:
        peer.stop()


@pytest.fixture
def npm_smsc(npm_smsc_factory: Callable[..., NpmSmsc]) -> NpmSmsc:
    """The npm SMSC peer with default options (credentials esme1 / pw, receipts at once)."""
    return npm_smsc_factory()


@pytest.fixture
async def smsc_simulator() -> AsyncIterator[SmscSimulator]:
    """The built-in simulator on a free loopback port (credentials switchboard / secret)."""
    simulator = SmscSimulator(seed=7)
    await simulator.start()
    yield simulator
    await simulator.stop()
