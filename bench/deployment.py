"""One benchmark deployment: a fresh database, a generated config, `switchboard serve` as a child
process on a free loopback port, a customer made with the CLI and its token; optionally the SMSC
peer. Everything it creates it removes (temporary directory, PostgreSQL database, processes).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import processes
from bench.load import HttpError, build_request, fetch

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
# The role the server connects as: an ordinary one, so row-level security applies as deployed
# (SWITCHBOARD_BENCH_PG_ROLE=postgres measures without it: a superuser passes every policy).
PG_ROLE = os.environ.get("SWITCHBOARD_BENCH_PG_ROLE", "switchboard_app")
CUSTOMER_ID = "C-BENCH0000000001"
PASSWORD = "bench correct horse"  # noqa: S105 - a throwaway local account
EMAIL = "bench@example.com"
READY_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 120.0


class Source:
    """Which Switchboard the children run: this checkout's, or `--src DIR` (another worktree,
    for before/after comparisons at fixed commits while src/ moves)."""

    directory: Path = REPO

    @classmethod
    def env(cls) -> dict[str, str]:
        if cls.directory == REPO:
            return {}
        return {"PYTHONPATH": os.pathsep.join([str(cls.directory / "src"), str(REPO)])}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string accepts JSON's escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    raise TypeError(f"no TOML form for {type(value).__name__}")


def to_toml(config: dict[str, Any]) -> str:
    """Scalars first, then `[section]` tables, then `[[array]]` tables; nested dicts inline."""
    lines = [f"{k} = {toml_value(v)}" for k, v in config.items() if not isinstance(v, dict | list)]
    lines += [f"{k} = {toml_value(v)}" for k, v in config.items() if isinstance(v, list) and not v]
    for name, table in config.items():
        if isinstance(table, dict):
            lines += ["", f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    for name, array in config.items():
        if isinstance(array, list) and array and all(isinstance(x, dict) for x in array):
            for item in array:
                lines += ["", f"[[{name}]]", *(f"{k} = {toml_value(v)}" for k, v in item.items())]
    return "\n".join(lines) + "\n"


class BenchDatabase:
    """A SQLite file in the work directory, or a PostgreSQL database made for this run."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self._name = f"bench_{secrets.token_hex(6)}"
        if kind == "sqlite":
            self.url = f"sqlite:///{workdir / 'switchboard.db'}"
        elif kind == "postgres":
            # the server's own ordinary role, as deployed: row-level security applies to it
            self.url = f"postgresql://{PG_ROLE}@127.0.0.1:5432/{self._name}"
        else:
            raise ValueError(f"unknown database {kind!r}")

    def create(self) -> None:
        if self.kind == "postgres":
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
                role = sql.Identifier(PG_ROLE)
                if admin.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (PG_ROLE,)
                ).fetchone():
                    pass
                else:
                    admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(role))
                admin.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(self._name), role)
                )

    def drop(self) -> None:
        if self.kind == "postgres":
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self._name)
                    )
                )

    def scalar(self, query: str) -> Any:
        """One value from a read-only query, for progress checks outside the server."""
        if self.kind == "sqlite":
            path = self.url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                return db.execute(query).fetchone()[0]
        # every account's rows (row-level security): see storage/sql/engines.py
        with psycopg.connect(
            self.url, autocommit=True, options="-c switchboard.account_id=*"
        ) as connection:
            row = connection.execute(query.encode()).fetchone()
            return row[0] if row else None

    def unsettled_messages(self) -> int:
        return int(
            self.scalar("SELECT count(*) FROM messages WHERE status IN ('QUEUED', 'SENDING')") or 0
        )


class SmscProcess:
    """`python -m bench.smsc` as a child; its progress lines are read on a thread."""

    def __init__(self, workdir: Path, record_prefixes: tuple[str, ...] = ()) -> None:
        self.port = processes.free_port()
        arguments = [sys.executable, "-m", "bench.smsc", "--port", str(self.port)]
        for prefix in record_prefixes:
            arguments += ["--record-prefix", prefix]
        self._workdir = workdir
        self.process = processes.spawn(
            arguments,
            log=workdir / "smsc.log",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=Source.env(),
            cwd=REPO,
        )
        self.latest: dict[str, Any] = {}
        self._dumped = threading.Event()
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listening.wait(30):
            raise RuntimeError(f"SMSC peer did not start; see {workdir / 'smsc.log'}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = json.loads(raw)
            if "listening" in line:
                self._listening.set()
            elif "dumped" in line:
                self._dumped.set()
            else:
                self.latest = line

    def timings(self) -> dict[str, list[float]]:
        """destination → [submit_sm at, receipt acknowledged at] (monotonic) for recorded numbers."""
        assert self.process.stdin is not None
        path = self._workdir / f"smsc-timings-{secrets.token_hex(4)}.json"
        self._dumped.clear()
        self.process.stdin.write(f"dump {path}\n".encode())
        self.process.stdin.flush()
        if not self._dumped.wait(60):
            raise RuntimeError("SMSC peer did not dump its timings")
        loaded: dict[str, list[float]] = json.loads(path.read_text())
        path.unlink()
        return loaded

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        processes.stop(self.process, grace_s=5)


@dataclass(slots=True)
class ServerProcess:
    process: subprocess.Popen[Any]
    port: int
    log: Path
    cpu_at_start: float = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss_mb(self) -> float:
        return processes.memory_kib(self.pid).get("VmHWM", 0) / 1024

    def rss_mb(self) -> float:
        return processes.memory_kib(self.pid).get("VmRSS", 0) / 1024

    def cpu_s(self) -> float:
        return processes.cpu_seconds(self.pid)


@dataclass(slots=True)
class Deployment:
    workdir: Path
    database: BenchDatabase
    config_path: Path
    server: ServerProcess
    token: str
    smsc: SmscProcess | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def restart(self, *, no_worker: bool) -> None:
        """Stop the server (SIGTERM, graceful) and start it again on the same database."""
        processes.stop(self.server.process)
        self.server = await start_server(self.config_path, self.server.log, no_worker=no_worker)

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        *,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> bytes:
        return build_request(
            method,
            path,
            query,
            headers={"authToken": self.token},
            body=body,
            content_type=content_type,
        )


def _cli(config: Path, *arguments: str, log: Path) -> str:
    with log.open("ab") as handle:
        result = subprocess.run(
            [sys.executable, "-m", "switchboard", *arguments, "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=handle,
            cwd=REPO,
            env={**os.environ, **Source.env()},
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"switchboard {' '.join(arguments[:2])} failed; see {log}")
    return result.stdout.decode()


async def start_server(config_path: Path, log: Path, *, no_worker: bool) -> ServerProcess:
    """`switchboard serve` on a free port, once /readyz answers 200."""
    port = processes.free_port()
    arguments = [
        sys.executable, "-m", "switchboard", "serve", "--config", str(config_path),
        "--host", HOST, "--port", str(port),
    ]  # fmt: skip
    if no_worker:
        arguments.append("--no-worker")
    server = ServerProcess(
        processes.spawn(arguments, log=log, env=Source.env(), cwd=REPO), port, log
    )
    try:
        await _wait_ready(server)
    except BaseException:
        processes.stop(server.process)
        raise
    server.cpu_at_start = server.cpu_s()
    return server


async def _wait_ready(server: ServerProcess) -> None:
    import asyncio

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"switchboard serve exited early; see {server.log}")
        with contextlib.suppress(OSError, TimeoutError, HttpError):
            response = await fetch(HOST, server.port, build_request("GET", "/readyz"), 2.0)
            if response.status == 200:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"switchboard serve not ready in {READY_TIMEOUT_S} s; see {server.log}")


def _merge(
    base: dict[str, Any], config: dict[str, Any], smsc: SmscProcess | None
) -> dict[str, Any]:
    merged = dict(base)
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    for connector in merged.get("connectors", []):
        if connector.get("port") == "{smsc_port}" and smsc is not None:
            connector["port"] = smsc.port
    return merged


def base_config(database: BenchDatabase) -> dict[str, Any]:
    config: dict[str, Any] = {
        "database_url": database.url,
        "logging": {"level": "INFO", "format": "console"},
        "server": {"shutdown_grace_s": 5.0},
    }
    if (Source.directory / "src" / "switchboard" / "fraud").is_dir():
        # The load sends to consecutive numbers of a few ranges: the SMS-pumping pattern the
        # fraud guard stops. Its own cost is measured by bench/fraud.py; `--set
        # fraud.enabled=true` measures a whole path with it. (Versions before it lack the key.)
        config["fraud"] = {"enabled": False}
    if database.kind == "postgres":
        config["token_signing_key"] = secrets.token_hex(64)
        config["otp_pepper"] = secrets.token_hex(64)
    return config


@contextlib.asynccontextmanager
async def deploy(
    db: str,
    config: dict[str, Any] | None = None,
    *,
    customer_settings: dict[str, Any] | None = None,
    callback_url: str | None = None,
    no_worker: bool = False,
    smsc_record_prefixes: tuple[str, ...] | None = None,
    keep_workdir: bool = bool(os.environ.get("BENCH_KEEP")),
) -> AsyncIterator[Deployment]:
    """Yield a running Deployment; stop and remove everything on the way out, errors included.

    `config` is merged over the base (database, secrets, logging); `smsc_record_prefixes` not None
    starts the SMSC peer first, and `config` may then use `{smsc_port}` in connector ports.
    """
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    database = BenchDatabase(db, workdir)
    smsc: SmscProcess | None = None
    server: ServerProcess | None = None
    deployment: Deployment | None = None
    try:
        database.create()
        if smsc_record_prefixes is not None:
            smsc = SmscProcess(workdir, smsc_record_prefixes)
        merged = _merge(base_config(database), config or {}, smsc)
        config_path = workdir / "switchboard.toml"
        config_path.write_text(to_toml(merged))
        log = workdir / "server.log"
        if db == "postgres":
            _cli(config_path, "db", "upgrade", log=log)
        _cli(
            config_path,
            "customers", "create", "--email", EMAIL, "--password", PASSWORD,
            "--customer-id", CUSTOMER_ID, "--name", "Bench",
            log=log,
        )  # fmt: skip
        update = ["customers", "update", CUSTOMER_ID]
        for key, value in (customer_settings or {}).items():
            update += ["--set", f"{key}={json.dumps(value)}"]
        if callback_url is not None:
            update += ["--callback-url", callback_url]
        if len(update) > 3:
            _cli(config_path, *update, log=log)
        server = await start_server(config_path, log, no_worker=no_worker)
        port = server.port
        key = base64.b64encode(PASSWORD.encode()).decode()
        response = await fetch(
            HOST,
            port,
            build_request(
                "GET", "/auth/v1/authentication/token", {"customerId": CUSTOMER_ID, "key": key}
            ),
        )
        if response.status != 200:
            raise RuntimeError(f"token refused: {response.status} {response.body[:200]!r}")
        token = json.loads(response.body)["token"]
        deployment = Deployment(workdir, database, config_path, server, token, smsc)
        yield deployment
    finally:
        if deployment is not None:
            server = deployment.server  # restart() replaces it
        if server is not None:
            processes.stop(server.process)
        if smsc is not None:
            smsc.stop()
        with contextlib.suppress(Exception):
            database.drop()
        if keep_workdir:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def sampling(server: ServerProcess, every_s: float = 0.25) -> Iterator[list[float]]:
    """RSS (MB) every `every_s` on a thread while the block runs."""
    samples: list[float] = []
    stopped = threading.Event()

    def sample() -> None:
        while not stopped.wait(every_s):
            samples.append(server.rss_mb())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stopped.set()
        thread.join(2)
