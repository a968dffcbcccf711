"""The `switchboard` command: serve, worker, db, customers, keys, clevertap, send, verify, bounces …"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from switchboard.cli import billing as billing_cli
from switchboard.cli.bounces import bounces_app
from switchboard.cli.clevertap import clevertap_app
from switchboard.cli.fraud import fraud_app
from switchboard.cli.keys import keys_app
from switchboard.cli.operators import operators_app
from switchboard.cli.sends import send_app, verify
from switchboard.config import Settings, load_settings
from switchboard.errors import ConfigurationError, SwitchboardError
from switchboard.observability import configure_logging

app = typer.Typer(
    help="Switchboard: self-hosted OTP verification and messaging.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
customers_app = typer.Typer(help="Customer accounts.", no_args_is_help=True)
callbacks_app = typer.Typer(
    help="Customer callbacks: deliveries, replay, secrets.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(customers_app, name="customers")
app.add_typer(callbacks_app, name="callbacks")
app.add_typer(billing_cli.prices_app, name="prices")
app.add_typer(keys_app, name="keys")
app.add_typer(bounces_app, name="bounces")
app.add_typer(send_app, name="send")
app.command("verify")(verify)
app.add_typer(clevertap_app, name="clevertap")
app.add_typer(operators_app, name="operators")
app.add_typer(fraud_app, name="fraud")
customers_app.command("topup")(billing_cli.customers_topup)
customers_app.command("wallet")(billing_cli.customers_wallet)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file (or $SWITCHBOARD_CONFIG)."),
]
T = TypeVar("T")


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        settings = load_settings(config, **overrides)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.logging.level, settings.logging.format)
    return settings


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(factory())  # type: ignore[arg-type]
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except SwitchboardError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run workers elsewhere.")
    ] = False,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="API processes sharing the port (one per core); from 2, the delivery workers "
            "run in a process of their own.",
        ),
    ] = None,
    reuse_port: Annotated[bool, typer.Option("--reuse-port", hidden=True)] = False,
) -> None:
    """Run the HTTP API and, unless --no-worker, the delivery workers (in this process, or with
    --processes 2 or more in a process of their own)."""
    import uvicorn

    from switchboard.api.app import create_app
    from switchboard.bootstrap import build_container
    from switchboard.cli.processes import ApiProcesses, child_argv, listen_socket, worker_argv

    settings = _settings(config)
    server = settings.server.model_copy(
        update={
            k: v
            for k, v in {
                "host": host,
                "port": port,
                "run_workers": False if no_worker else None,
                "processes": processes,
            }.items()
            if v is not None
        }
    )
    copies = server.processes - 1
    worker_process = copies > 0 and server.run_workers
    wake_dir: Path | None = None
    if worker_process and not settings.worker.wake_socket:
        # The API processes wake the worker process through a socket of their own.
        wake_dir = Path(tempfile.mkdtemp(prefix="switchboard-"))
        os.environ["SWITCHBOARD_WORKER__WAKE_SOCKET"] = str(wake_dir / "wake.sock")
        worker_settings = settings.worker.model_copy(
            update={"wake_socket": str(wake_dir / "wake.sock")}
        )
        settings = settings.model_copy(update={"worker": worker_settings})
    if worker_process:  # the workers get a process of their own: the API's loop stays free
        server = server.model_copy(update={"run_workers": False})
    settings = settings.model_copy(update={"server": server})
    try:
        container = build_container(settings)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if copies and server.port == 0:
        typer.echo("error: --processes needs a fixed --port", err=True)
        raise typer.Exit(2)
    try:
        sock = listen_socket(server.host, server.port, reuse_port=reuse_port or copies > 0)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {server.host}:{server.port}: {exc}", err=True)
        raise typer.Exit(1) from None
    base = f"http://{server.host}:{server.port}"
    if not reuse_port:
        typer.echo(f"Switchboard listening on {base} (database: {_describe(settings)})")
        typer.echo(f"API docs: {base}/docs   health: {base}/healthz")
        typer.echo(
            "Create a first customer:  switchboard customers create --email you@example.com "
            "--password 'choose-a-password'"
        )
    others = None
    if copies:
        if container.database.is_sqlite:  # the other processes find the schema current
            from switchboard.storage.sql import migrate

            migrate.upgrade(settings.database_url)
        config_path = str(config) if config else None
        argvs = [child_argv(config_path, server.host, server.port)] * copies
        if worker_process:
            argvs.append(worker_argv(config_path))
        others = ApiProcesses(argvs, grace_s=server.shutdown_grace_s)
        others.start()
        typer.echo(
            f"{copies} more API process(es)"
            + (" and a worker process" if worker_process else "")
            + f": pids {', '.join(map(str, others.pids))}"
        )
    uvicorn_config = uvicorn.Config(
        create_app(container),
        access_log=False,
        log_level=settings.logging.level.lower(),
        timeout_graceful_shutdown=int(server.shutdown_grace_s) or None,
    )
    try:
        uvicorn.Server(uvicorn_config).run(sockets=[sock])
    finally:
        if others is not None:
            others.stop()
        if wake_dir is not None:
            shutil.rmtree(wake_dir, ignore_errors=True)


def _describe(settings: Settings) -> str:
    if settings.sqlite_path is not None:
        return f"SQLite {settings.sqlite_path}"
    return "PostgreSQL"


@app.command()
def worker(config: ConfigOption = None) -> None:
    """Run the delivery workers alone (scale-out: several share one PostgreSQL)."""
    from switchboard.bootstrap import build_container

    settings = _settings(config)

    async def main() -> None:
        container = build_container(settings)
        await container.start(run_workers=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        typer.echo(f"worker {container.dispatcher.owner} running; SIGTERM drains and exits")
        await stop.wait()
        await container.stop()

    _run(main)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply migrations to the configured database."""
    from switchboard.storage.sql import migrate

    settings = _settings(config)
    if settings.sqlite_path is not None:
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.database_url)
    typer.echo(f"database is up to date ({_describe(settings)})")


def _with_container(config: Path | None, job: Callable[[Any], Awaitable[T]]) -> T:
    from switchboard.bootstrap import build_container

    settings = _settings(config)

    async def main() -> T:
        container = build_container(settings)
        await container.start(run_workers=False)
        try:
            return await job(container)
        finally:
            await container.stop()

    return _run(main)


def _account_view(account: Any, endpoint: Any = None) -> dict[str, Any]:
    view = {
        "customerId": account.id,
        "email": account.email,
        "name": account.name,
        "enabled": account.enabled,
        "locked": account.locked_until is not None,
        "lockedUntil": account.locked_until,
        "settings": account.settings,
        "callbackUrl": account.callback_url,
        "createdAt": account.created_at,
    }
    if endpoint is not None:
        view["callback"] = _callback_view(endpoint)
    return view


def _callback_view(endpoint: Any) -> dict[str, Any]:
    """The operator's view of an endpoint: secrets included, for the customer's receiver."""
    from switchboard.callbacks.secrets import secret_id

    return {
        "url": endpoint.url,
        "secret": endpoint.secret,
        "secretId": secret_id(endpoint.secret) if endpoint.secret else None,
        "previousSecret": endpoint.previous_secret,
        "rotatedAt": endpoint.rotated_at,
        "events": sorted(endpoint.events),
        "disabledAt": endpoint.disabled_at,
        "disabledReason": endpoint.disabled_reason,
    }


@customers_app.command("create")
def customers_create(
    email: Annotated[str, typer.Option(help="The customer's e-mail (login).")],
    password: Annotated[str, typer.Option(help="The password; `key` is its base64.")],
    customer_id: Annotated[
        str | None, typer.Option("--customer-id", help="Choose the id (default C-…).")
    ] = None,
    name: Annotated[str, typer.Option(help="Display name; also the OTP brand.")] = "",
    config: ConfigOption = None,
) -> None:
    """Create a customer and print it as JSON."""

    async def job(container: Any) -> Any:
        return await container.accounts.create_customer(
            email=email, password=password, customer_id=customer_id, name=name
        )

    _print_json(_account_view(_with_container(config, job)))


@customers_app.command("list")
def customers_list(config: ConfigOption = None) -> None:
    """List customers (JSON lines)."""

    async def job(container: Any) -> Any:
        return await container.accounts.list()

    for account in _with_container(config, job):
        typer.echo(json.dumps(_account_view(account), default=str))


@customers_app.command("show")
def customers_show(customer_id: str, config: ConfigOption = None) -> None:
    """Show one customer as JSON."""

    async def job(container: Any) -> Any:
        account = await container.accounts.get(customer_id)
        return account, await container.callbacks.endpoint(customer_id)

    _print_json(_account_view(*_with_container(config, job)))


def _parse_setting(raw: str) -> tuple[str, Any]:
    name, sep, value = raw.partition("=")
    if not sep or not name:
        raise typer.BadParameter(f"'{raw}' is not KEY=VALUE")
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    return name.strip(), parsed


@customers_app.command("update")
def customers_update(
    customer_id: str,
    password: Annotated[str | None, typer.Option(help="New password; revokes its tokens.")] = None,
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Allow or refuse API access.")
    ] = None,
    unlock: Annotated[bool, typer.Option(help="Clear a brute-force lock.")] = False,
    revoke_tokens: Annotated[bool, typer.Option(help="Revoke every token issued so far.")] = False,
    callback_url: Annotated[
        str | None, typer.Option(help="Delivery report callback URL ('' to remove).")
    ] = None,
    callback_events: Annotated[
        str | None,
        typer.Option(help="Extra callback events, comma-separated: verification ('' for none)."),
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Account setting KEY=VALUE (JSON values), e.g. brand=Acme, otp_length=6, "
            "otp_timeout_s=120, allowed_countries='[\"91\"]', fallback='[\"WHATSAPP\"]', "
            "daily_quota=500, app_hash=FA+9qCX9VSu.",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Change a customer's password, access, lock, callback or settings."""
    settings = dict(_parse_setting(s) for s in setting or [])

    async def job(container: Any) -> Any:
        account = await container.accounts.update(
            customer_id,
            password=password,
            enabled=enable,
            unlock=unlock,
            settings=settings or None,
        )
        if revoke_tokens:
            account = await container.accounts.revoke_tokens(customer_id)
        endpoint = await container.callbacks.endpoint(customer_id)
        if callback_url is not None or callback_events is not None:
            events = None
            if callback_events is not None:
                events = [e for e in callback_events.split(",") if e.strip()]
            url = endpoint.url if callback_url is None else callback_url
            endpoint = (
                await container.callbacks.configure(customer_id, url, events=events)
            ).endpoint
            account = await container.accounts.get(customer_id)
        return account, endpoint

    _print_json(_account_view(*_with_container(config, job)))


@callbacks_app.command("deliveries")
def callbacks_deliveries(
    customer_id: str,
    status: Annotated[
        str | None, typer.Option(help="Only PENDING, DELIVERED or DEAD deliveries.")
    ] = None,
    message_id: Annotated[str | None, typer.Option(help="Only this message's.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    config: ConfigOption = None,
) -> None:
    """List a customer's recent callback deliveries with their last attempts (JSON lines)."""
    from switchboard.api.routes.callbacks import delivery_view

    async def job(container: Any) -> Any:
        return await container.callbacks.deliveries(
            customer_id, status=status, message_id=message_id, limit=limit
        )

    for delivery in _with_container(config, job):
        typer.echo(json.dumps(delivery_view(delivery)))


@callbacks_app.command("replay")
def callbacks_replay(customer_id: str, delivery_id: str, config: ConfigOption = None) -> None:
    """Queue a delivery again (e.g. a dead-lettered one): same webhook-id, new schedule.

    A running worker sends it within its poll interval.
    """
    from switchboard.api.routes.callbacks import delivery_view

    async def job(container: Any) -> Any:
        return await container.callbacks.replay(customer_id, delivery_id)

    _print_json(delivery_view(_with_container(config, job)))


@callbacks_app.command("rotate-secret")
def callbacks_rotate_secret(customer_id: str, config: ConfigOption = None) -> None:
    """Give a customer a new signing secret; the old one keeps signing beside it for 24 h."""

    async def job(container: Any) -> Any:
        return (await container.callbacks.rotate_secret(customer_id)).endpoint

    _print_json(_callback_view(_with_container(config, job)))


@app.command()
def outbox(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new messages.")
    ] = False,
    customer: Annotated[str | None, typer.Option(help="Only this customer's messages.")] = None,
    limit: Annotated[int, typer.Option(help="How many recent messages to show.")] = 20,
    config: ConfigOption = None,
) -> None:
    """Show what the sandbox carrier "sent" (codes included: it is a sandbox)."""
    from switchboard.storage.sql.engines import Database
    from switchboard.storage.sql.sandbox import SqlOutbox

    settings = _settings(config)

    async def main() -> None:
        database = Database(settings.database_url, pool_size=1)
        store = SqlOutbox(database, limit=settings.sandbox.outbox_limit)
        last = 0
        try:
            for entry in await store.entries(customer, limit=limit):
                last = max(last, int(entry["id"]))
                _print_entry(entry)
            while follow:
                await asyncio.sleep(0.5)
                for entry in await store.entries(customer, after_id=last, limit=100):
                    last = max(last, int(entry["id"]))
                    _print_entry(entry)
        finally:
            await database.dispose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def _print_entry(entry: dict[str, Any]) -> None:
    sent = entry["sent_at"].strftime("%H:%M:%S")
    text = str(entry["text"]).replace("\n", " ")
    typer.echo(
        f"{sent} {entry['channel']:<8} {entry['destination']:<16} {entry['sender'] or '-'}: {text}"
    )


@app.command()
def status(
    url: Annotated[str, typer.Option(help="The server's base URL.")] = "http://127.0.0.1:8080",
) -> None:
    """Show connectors, SMPP binds and queue depth of a running server."""
    import httpx

    try:
        response = httpx.get(f"{url.rstrip('/')}/status", timeout=5)
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    view = response.json()
    typer.echo(
        "queue: " + (", ".join(f"{k}={v}" for k, v in sorted(view["queue"].items())) or "empty")
    )
    for connector in view["connectors"]:
        state = "up" if connector["available"] else "DOWN"
        typer.echo(f"{connector['name']:<16} {state:<5} {','.join(connector['channels'])}")
        detail = connector.get("detail", {})
        if "bind_slots" in detail:  # this worker's part of the connector's binds
            typer.echo(f"    binds held: {detail['bind_slots']} (share {detail['bind_share']:.3g})")
        for bind in detail.get("binds", []):
            last = bind.get("last_bind_status")
            note = f" last status 0x{last:02X}" if last else ""
            typer.echo(
                f"    {bind['name']:<20} {bind['state']:<12} window "
                f"{bind['outstanding']}/{bind['window']}{note}"
                + (f" ({bind['last_error']})" if bind.get("last_error") else "")
            )


@app.command("smsc-sim")
def smsc_sim(
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = 2775,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    system_id: Annotated[str, typer.Option(help="Accepted system_id.")] = "switchboard",
    password: Annotated[str, typer.Option(help="Accepted password.")] = "secret",  # noqa: S107
    receipt_delay: Annotated[float, typer.Option(help="Seconds before each receipt.")] = 1.0,
    delivered: Annotated[float, typer.Option(help="Share of DELIVRD receipts.")] = 1.0,
    undelivered: Annotated[float, typer.Option(help="Share of UNDELIV receipts.")] = 0.0,
    expired: Annotated[float, typer.Option(help="Share of EXPIRED receipts.")] = 0.0,
    rejected: Annotated[float, typer.Option(help="Share of REJECTD receipts.")] = 0.0,
    throttle: Annotated[float, typer.Option(help="Share of submits answered 0x58.")] = 0.0,
    silent: Annotated[bool, typer.Option(help="Never answer submit_sm.")] = False,
    receipt_before_resp: Annotated[
        bool, typer.Option(help="Send receipts before submit_sm_resp.")
    ] = False,
    hex_ids: Annotated[
        bool, typer.Option(help="Hex ids in responses, decimal in receipts.")
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Random seed for the outcome shares.")] = None,
) -> None:
    """Run an SMSC simulator with scripted outcomes, for local work and tests."""
    from switchboard.channels.smpp.simulator import run_simulator

    def ready(bound_host: str, bound_port: int) -> None:
        typer.echo(f"SMSC simulator on {bound_host}:{bound_port} (system_id {system_id})")

    with contextlib.suppress(KeyboardInterrupt):
        run_simulator(
            host, port, system_id=system_id, password=password, receipt_delay_s=receipt_delay,
            delivered=delivered, undelivered=undelivered, expired=expired, rejected=rejected,
            throttle_share=throttle, silent=silent, receipt_before_resp=receipt_before_resp,
            hex_ids=hex_ids, seed=seed, on_ready=ready,
        )  # fmt: skip


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
