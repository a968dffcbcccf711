"""The scenarios of the benchmark issue; each returns one RunFigures per run.

accept    OTP sends through the HTTP API: requests/s and latency at a fixed concurrency.
validate  validateOtp with the right code, once per verification: requests/s and latency.
e2e       SMS sends → submit_sm at the SMSC peer → receipt stored → customer callback.
bulk      a campaign draining to one SMSC (window 100) while OTPs arrive at a steady rate.
ingest    an .xlsx campaign upload: seconds to accept, the server's peak RSS.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.callbacks import CallbackReceiver
from bench.deployment import HOST, REPO, Deployment, deploy, sampling
from bench.figures import OUT, RunFigures, percentile
from bench.load import LoadResult, closed_loop, fetch, paced
from bench.profiling import PySpy

OTP_CODE = "123456"
SMS_TEXT = "Your order 4711 has shipped and will arrive tomorrow. Track it in the app."
SENDER = "BENCH"


@dataclass(frozen=True, slots=True)
class Options:
    quick: bool = False
    concurrency: int = 50
    no_worker: bool = False
    profile: bool = False
    count: int | None = None  # overrides the scenario's request count
    time_limit_s: float | None = None
    overrides: tuple[tuple[str, Any], ...] = ()  # ("section.key", value) over the config

    def config(self, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """The scenario's config with the command line's overrides applied."""
        config: dict[str, Any] = {
            k: dict(v) if isinstance(v, dict) else v for k, v in (base or {}).items()
        }
        for dotted, value in self.overrides:
            section, _, key = dotted.rpartition(".")
            if section:
                config.setdefault(section, {})[key] = value
            else:
                config[key] = value
        return config

    def size(self, full: int, quick: int) -> int:
        return self.count if self.count is not None else quick if self.quick else full

    def limit(self, full: float, quick: float) -> float:
        return self.time_limit_s or (quick if self.quick else full)


Scenario = Callable[[str, Options], Coroutine[Any, Any, RunFigures]]


def _ms(seconds: float) -> float:
    return seconds * 1000


def _latencies(result: LoadResult) -> list[float]:
    return [answered - sent for _, sent, answered in result.timings]


def _add_http(figures: RunFigures, result: LoadResult, name: str = "") -> None:
    latencies = _latencies(result)
    prefix = f"{name} " if name else ""
    figures.add(f"{prefix}req/s", result.ok / result.elapsed_s, "/s", headline=True)
    figures.add(f"{prefix}p50", _ms(percentile(latencies, 50)), "ms", headline=True)
    figures.add(f"{prefix}p99", _ms(percentile(latencies, 99)), "ms", headline=True)
    figures.add(f"{prefix}ok", result.ok, "")
    if result.errors:
        figures.add(f"{prefix}errors", result.errors, "")
        first = next(iter(result.bodies.values()), b"")
        figures.notes.append(f"{prefix}first error body: {first[:160].decode(errors='replace')}")


class _Measure:
    """Server CPU share, peak RSS and load average around the measured phase; py-spy if asked."""

    def __init__(self, deployment: Deployment, figures: RunFigures, options: Options) -> None:
        self._d = deployment
        self._figures = figures
        self._options = options
        self._spy: PySpy | None = None

    def __enter__(self) -> _Measure:
        self._figures.load_before = os.getloadavg()[0]
        self._cpu = self._d.server.cpu_s()
        self._began = time.monotonic()
        if self._options.profile:
            stem = OUT / f"profile-{self._figures.scenario}-{self._figures.db}-{int(time.time())}"
            self._spy = PySpy(self._d.server.pid, stem)
        return self

    def __exit__(self, *_: object) -> None:
        elapsed = max(1e-9, time.monotonic() - self._began)
        if self._spy is not None:
            summary = self._spy.stop()
            self._figures.notes.append(f"profile {self._spy.summary_path}")
            print(summary)
        self._figures.add("server cpu", (self._d.server.cpu_s() - self._cpu) / elapsed * 100, "%")
        self._figures.add("server peak rss", self._d.server.peak_rss_mb(), "MB", headline=True)
        self._figures.load_after = os.getloadavg()[0]


def _otp_send(deployment: Deployment, national: int) -> bytes:
    return deployment.request(
        "POST",
        "/verification/v3/send",
        {"countryCode": "91", "flowType": "SMS", "mobileNumber": str(national)},
    )


async def _wait_until(check: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(every_s)
    return check()


async def _drained(deployment: Deployment, timeout_s: float) -> bool:
    return await _wait_until(lambda: deployment.database.unsettled_messages() == 0, timeout_s, 0.5)


# -- 1. accept ----------------------------------------------------------------------------

ACCEPT_BASE = 9_800_000_000
WARMUP = 300


async def accept(db: str, options: Options) -> RunFigures:
    total = options.size(20_000, 3_000)
    figures = RunFigures("accept", db)
    if options.no_worker:
        figures.notes.append("--no-worker: API only, nothing drains")
    async with deploy(
        db,
        options.config(),
        customer_settings={"daily_quota": 100_000_000},
        no_worker=options.no_worker,
    ) as d:

        def make(index: int) -> bytes:
            return _otp_send(d, ACCEPT_BASE + index)

        await closed_loop(HOST, d.port, make, total=WARMUP, concurrency=options.concurrency,
                          time_limit_s=60)  # fmt: skip
        with _Measure(d, figures, options):
            result = await closed_loop(
                HOST, d.port, make, total=total, concurrency=options.concurrency,
                time_limit_s=options.limit(60, 20), first_index=WARMUP,
            )  # fmt: skip
        _add_http(figures, result)
    figures.notes.append(f"concurrency {options.concurrency}")
    return figures


# -- 5. validate --------------------------------------------------------------------------

VALIDATE_BASE = 9_700_000_000


async def validate(db: str, options: Options) -> RunFigures:
    """Verifications on sandbox test numbers (a fixed code), each validated once, rightly.

    They are made first (10 minutes' validity, the maximum; at most 5 minutes of sending), the
    worker drains their messages, then each is validated once: 300 to warm up, then the rest.
    """
    total = options.size(20_000, 3_000)
    figures = RunFigures("validate", db)
    numbers = {f"+91{VALIDATE_BASE + i}": OTP_CODE for i in range(total + WARMUP)}
    async with deploy(db, options.config({"sandbox": {"test_numbers": numbers}})) as d:

        def send(index: int) -> bytes:
            return d.request(
                "POST",
                "/verification/v3/send",
                {
                    "countryCode": "91", "flowType": "SMS", "otpTimeout": "600",
                    "mobileNumber": str(VALIDATE_BASE + index),
                },
            )  # fmt: skip

        sends = await closed_loop(
            HOST, d.port, send, total=total + WARMUP, concurrency=options.concurrency,
            time_limit_s=300, keep_bodies=True,
        )  # fmt: skip
        ids = [
            json.loads(body)["data"]["verificationId"]
            for _, body in sorted(sends.bodies.items())
            if body.startswith(b'{"responseCode":200')
        ]
        if len(ids) < total + WARMUP:
            figures.notes.append(f"{len(ids)} of {total + WARMUP} verifications made in 300 s")
        if not await _drained(d, 120):
            figures.notes.append("the sandbox had not drained the sends; validating anyway")

        def make(index: int) -> bytes:
            return d.request(
                "GET",
                "/verification/v3/validateOtp",
                {"verificationId": ids[index], "code": OTP_CODE},
            )

        warmup = min(WARMUP, len(ids) // 10)
        await closed_loop(HOST, d.port, make, total=warmup, concurrency=options.concurrency,
                          time_limit_s=60)  # fmt: skip
        with _Measure(d, figures, options):
            result = await closed_loop(
                HOST, d.port, make, total=len(ids) - warmup, concurrency=options.concurrency,
                time_limit_s=options.limit(60, 20), first_index=warmup,
            )  # fmt: skip
        _add_http(figures, result)
    figures.notes.append(f"concurrency {options.concurrency}")
    return figures


# -- ceilings ------------------------------------------------------------------------------


async def healthz(db: str, options: Options) -> RunFigures:
    """GET /healthz: the HTTP stack and this load generator, without auth or the database."""
    total = options.size(50_000, 5_000)
    figures = RunFigures("healthz", db)
    async with deploy(db, options.config(), no_worker=True) as d:
        request = d.request("GET", "/healthz")
        await closed_loop(HOST, d.port, lambda _: request, total=WARMUP,
                          concurrency=options.concurrency, time_limit_s=60)  # fmt: skip
        with _Measure(d, figures, options):
            result = await closed_loop(
                HOST, d.port, lambda _: request, total=total, concurrency=options.concurrency,
                time_limit_s=options.limit(30, 10),
            )  # fmt: skip
        _add_http(figures, result)
    figures.notes.append(f"concurrency {options.concurrency}")
    return figures


# -- 2. end to end -------------------------------------------------------------------------

E2E_BASE = 9_810_000_000
SMSC_WAIT_S = 30.0


def _smpp_config(window: int = 100) -> dict[str, Any]:
    """One SMPP connector to the bench SMSC peer (port filled in by `deploy`), SMS routed to it."""
    return {
        "connectors": [
            {
                "name": "smsc", "type": "smpp", "host": HOST, "port": "{smsc_port}",
                "system_id": "bench", "password": "bench", "window": window,
                "tps": 1_000_000.0, "binds": 1, "reconnect_initial_s": 0.5,
            }
        ],
        "routes": [{"channel": "SMS", "connectors": ["smsc"]}],
        "webhooks": {"allow_networks": ["127.0.0.1/32"]},
    }  # fmt: skip


async def _bound(deployment: Deployment) -> None:
    smsc = deployment.smsc
    assert smsc is not None
    if not await _wait_until(lambda: smsc.latest.get("binds", 0) >= 1, SMSC_WAIT_S, 0.1):
        raise RuntimeError("the server did not bind to the SMSC peer")


def _sms_send(deployment: Deployment, national: int) -> bytes:
    return deployment.request(
        "POST",
        "/verification/v3/send",
        {
            "type": "SMS", "flowType": "SMS", "messageType": "TRANSACTIONAL", "senderId": SENDER,
            "countryCode": "91", "mobileNumber": str(national), "message": SMS_TEXT,
        },
    )  # fmt: skip


def _rate(count: int, first: float, last: float) -> float:
    return count / (last - first) if count > 1 and last > first else math.nan


async def e2e(db: str, options: Options) -> RunFigures:
    """Each SMS: HTTP accept → claim → submit_sm → receipt (stored before deliver_sm_resp) →
    the customer's callback. Rates are per stage between its first and last event."""
    total = options.size(20_000, 2_000)
    figures = RunFigures("e2e", db)
    receiver = CallbackReceiver()
    await receiver.start()
    try:
        async with deploy(
            db,
            options.config(_smpp_config()),
            customer_settings={"daily_quota": 100_000_000},
            callback_url=receiver.url,
            smsc_record_prefixes=("9198",),
        ) as d:
            assert d.smsc is not None
            smsc = d.smsc
            await _bound(d)
            limit = options.limit(120, 60)
            cpu_before = d.server.cpu_s()
            with _Measure(d, figures, options):
                result = await closed_loop(
                    HOST, d.port, lambda i: _sms_send(d, E2E_BASE + i), total=total,
                    concurrency=options.concurrency, time_limit_s=limit, keep_bodies=True,
                )  # fmt: skip
                accepted = result.ok
                await _wait_until(
                    lambda: (
                        smsc.latest.get("receipts_acked", 0) >= accepted
                        and receiver.count >= accepted
                    ),
                    limit,
                )
            server_cpu_s = d.server.cpu_s() - cpu_before
            progress = dict(smsc.latest)
            timings = smsc.timings()
    finally:
        await receiver.stop()
    sent = {index: at for index, at, _ in result.timings}
    message_ids = {
        index: json.loads(body)["data"].get("messageId")
        for index, body in result.bodies.items()
        if body.startswith(b'{"responseCode":200')
    }
    to_submit, to_receipt, to_callback = [], [], []
    for index, at in sent.items():
        seen = timings.get(f"91{E2E_BASE + index}")
        if seen:
            to_submit.append(seen[0] - at)
            if len(seen) > 1:
                to_receipt.append(seen[1] - at)
        arrived = receiver.arrivals.get(message_ids.get(index) or "")
        if arrived:
            to_callback.append(arrived - at)
    figures.add("accept", result.ok / result.elapsed_s, "/s", headline=True)
    figures.add(
        "submit", _rate(progress["submits"], progress["first_submit"], progress["last_submit"]),
        "/s", headline=True,
    )  # fmt: skip
    figures.add(
        "receipts", _rate(progress["receipts_acked"], progress["first_submit"], progress["last_ack"]),
        "/s",
    )  # fmt: skip
    figures.add("callbacks", _rate(receiver.count, receiver.first, receiver.last), "/s")
    done_at = receiver.last if receiver.count else progress["last_ack"]
    completed = len(to_callback) if receiver.count else len(to_receipt)
    figures.add("end to end", _rate(completed, result.began, done_at), "msg/s", headline=True)
    # The figure to compare versions by on a shared machine: less noisy than any rate.
    figures.add("server cpu per msg", 1000 * server_cpu_s / max(completed, 1), "ms", headline=True)
    figures.add("req→submit p50", _ms(percentile(to_submit, 50)), "ms")
    figures.add("req→submit p99", _ms(percentile(to_submit, 99)), "ms")
    figures.add("req→receipt p99", _ms(percentile(to_receipt, 99)), "ms")
    figures.add("req→callback p50", _ms(percentile(to_callback, 50)), "ms", headline=True)
    figures.add("req→callback p99", _ms(percentile(to_callback, 99)), "ms", headline=True)
    figures.add("sent", result.ok, "msgs")
    figures.add("submitted", progress["submits"], "msgs")
    figures.add("receipts stored", progress["receipts_acked"], "msgs")
    figures.add("callbacks", receiver.count, "msgs")
    if result.errors:
        figures.add("errors", result.errors, "")
    if not receiver.count:
        figures.notes.append("no callbacks arrived: end to end is measured up to receipts")
    figures.notes.append(f"concurrency {options.concurrency}, window 100")
    return figures


# -- 4. bulk ingest and 3. OTP under a bulk drain -------------------------------------------

XLSX_TEMPLATE = "Hello ##var1##, your statement of ##var2## is ready (due ##var3##)."
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
INGEST_TIMEOUT_S = 900.0


def recipients_file(rows: int) -> Path:
    """An Excel-like .xlsx (bench/ingest_xlsx.py's generator: shared strings, numeric country
    and mobile 98…, a name, an amount, a date), made once per size in bench/out/."""
    path = OUT / f"recipients-{rows}.xlsx"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        partial = path.with_suffix(".partial")
        subprocess.run(
            [
                sys.executable, "-c",
                "import sys; from pathlib import Path; from bench.ingest_xlsx import generate; "
                "generate(Path(sys.argv[1]), int(sys.argv[2]), 'shared')",
                str(partial), str(rows),
            ],
            cwd=REPO, check=True, timeout=INGEST_TIMEOUT_S,
        )  # fmt: skip
        partial.rename(path)
    return path


def _upload(deployment: Deployment, path: Path) -> bytes:
    boundary = f"bench{secrets.token_hex(8)}"
    body = b"".join(
        (
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="file"; filename="recipients.xlsx"\r\n',
            f"Content-Type: {XLSX_TYPE}\r\n\r\n".encode(),
            path.read_bytes(),
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )
    return deployment.request(
        "POST",
        "/verification/v3/send",
        # PROMOTIONAL: without messageType a MessageNow send is OTP (the spec's default), and a
        # campaign in the OTP lane would queue ahead of later OTPs
        {
            "type": "SMS",
            "flowType": "SMS",
            "messageType": "PROMOTIONAL",
            "senderId": SENDER,
            "message": XLSX_TEMPLATE,
        },
        body=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


async def _ingest(deployment: Deployment, path: Path, figures: RunFigures) -> int:
    """Upload; adds seconds to accept; returns the rows accepted (0 on a refusal)."""
    request = _upload(deployment, path)
    began = time.monotonic()
    response = await fetch(HOST, deployment.port, request, INGEST_TIMEOUT_S)
    figures.add("accept", time.monotonic() - began, "s", headline=True)
    if response.status != 200:
        figures.notes.append(f"upload refused: {response.status} {response.body[:200]!r}")
        return 0
    data = json.loads(response.body)["data"]
    figures.add("accepted", data.get("accepted", 0), "msgs")
    if data.get("invalid"):
        figures.add("invalid", data["invalid"], "msgs")
    return int(data.get("accepted", 0))


async def ingest(db: str, options: Options) -> RunFigures:
    """The upload alone (API only, nothing drains): seconds to accept, the server's peak RSS."""
    rows = options.size(1_000_000, 20_000)
    path = recipients_file(rows)
    figures = RunFigures("ingest", db)
    async with deploy(
        db, options.config(), customer_settings={"daily_quota": 100_000_000}, no_worker=True
    ) as d:
        rss_before = d.server.rss_mb()
        with _Measure(d, figures, options), sampling(d.server) as samples:
            await _ingest(d, path, figures)
        figures.add("rss before", rss_before, "MB")
        figures.add("rss sampled max", max(samples, default=math.nan), "MB")
    figures.notes.append(f"{rows:,} rows, {path.stat().st_size / 2**20:.1f} MiB")
    return figures


OTP_BASE = 9_600_000_000
OTP_RATE = 20.0
OTP_WAIT_S = 60.0


async def bulk(db: str, options: Options) -> RunFigures:
    """A campaign is staged (upload with workers off), then the server restarts with workers and
    drains it to the SMSC peer (window 100) while OTPs arrive at 20/s; OTP latency is from the
    request's due time to its submit_sm at the peer."""
    rows = options.size(1_000_000, 50_000)
    window_s = options.limit(30, 10)
    path = recipients_file(rows)
    figures = RunFigures("bulk", db)
    async with deploy(
        db,
        options.config(_smpp_config()),
        customer_settings={"daily_quota": 100_000_000},
        no_worker=True,
        smsc_record_prefixes=("9196",),
    ) as d:
        staged = await _ingest(d, path, figures)
        if not staged:
            return figures
        await d.restart(no_worker=False)
        assert d.smsc is not None
        smsc = d.smsc
        await _bound(d)
        await asyncio.sleep(2)  # past the first claims, into the steady drain
        with _Measure(d, figures, options):
            before = dict(smsc.latest)
            otps = await paced(
                HOST, d.port, lambda i: _otp_send(d, OTP_BASE + i), rate_per_s=OTP_RATE,
                total=int(OTP_RATE * window_s), time_limit_s=window_s,
            )  # fmt: skip
            after = dict(smsc.latest)
        due = {index: at for index, at, _ in otps.timings}
        wanted = {f"91{OTP_BASE + index}" for index in due}
        deadline = time.monotonic() + OTP_WAIT_S
        timings = smsc.timings()
        while not wanted <= timings.keys() and time.monotonic() < deadline:
            await asyncio.sleep(1)  # late OTPs: their latency counts, however long
            timings = smsc.timings()
        final = dict(smsc.latest)
    to_submit = [
        seen[0] - due[index] for index in due if (seen := timings.get(f"91{OTP_BASE + index}"))
    ]
    drained = after["submits"] - before["submits"] - len(to_submit)
    figures.add("drain", drained / max(1e-9, after["t"] - before["t"]), "msg/s", headline=True)
    figures.add("otp req→submit p50", _ms(percentile(to_submit, 50)), "ms", headline=True)
    figures.add("otp req→submit p99", _ms(percentile(to_submit, 99)), "ms", headline=True)
    figures.add("otp http p99", _ms(percentile(_latencies(otps), 99)), "ms")
    figures.add("otps", len(due), "msgs")
    figures.add("otps submitted", len(to_submit), "msgs")
    if otps.errors:
        figures.add("otp errors", otps.errors, "")
    figures.add("bulk submitted", final["submits"] - len(to_submit), "msgs")
    if len(to_submit) < len(due):
        figures.notes.append(
            f"{len(due) - len(to_submit)} OTPs not submitted {OTP_WAIT_S:.0f} s on"
        )
    figures.notes.append(f"{rows:,}-row campaign, OTPs at {OTP_RATE:.0f}/s for {window_s:.0f} s")
    return figures


SCENARIOS: dict[str, Scenario] = {
    "healthz": healthz,
    "e2e": e2e,
    "bulk": bulk,
    "ingest": ingest,
    "accept": accept,
    "validate": validate,
}


def scenario_names() -> list[str]:
    return list(SCENARIOS)
