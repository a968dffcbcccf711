"""The composition root: settings → database, stores, drivers, services, workers.

The only module that picks concrete adapters. Building a container does no I/O; `start()`
connects drivers and starts the background loops, `stop()` drains and closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from switchboard.automations.events import EventSink
from switchboard.automations.runner import AutomationRunner
from switchboard.automations.service import AutomationService
from switchboard.callbacks.sender import WebhookSender
from switchboard.callbacks.ssrf import AddressPolicy
from switchboard.channels.base import (
    ChannelDriver,
    DeliveryReport,
    InboundMessage,
    connector_views,
)
from switchboard.channels.sandbox import SandboxDriver, SandboxOptions
from switchboard.clock import Clock, SystemClock
from switchboard.config import ConnectorSettings, Settings, ShopifySettings
from switchboard.console.services import ConsoleServices, IntegrationPanel
from switchboard.console.sessions import OperatorService, SessionManager
from switchboard.domain.accounts import LockoutPolicy
from switchboard.domain.callbacks import CLEVERTAP_REPORT_EVENT
from switchboard.domain.messages import Channel, MessageType
from switchboard.domain.pricing import Currency
from switchboard.domain.routing import SANDBOX, Route
from switchboard.errors import ConfigurationError
from switchboard.fraud.guard import FraudGuard
from switchboard.fraud.store import CounterStore
from switchboard.integrations.clevertap.credentials import CleverTapCredentials
from switchboard.integrations.clevertap.reports import CleverTapReportFormat
from switchboard.integrations.clevertap.service import CleverTapService
from switchboard.integrations.pipedrive.service import PipedriveApp
from switchboard.integrations.shopify.admin import ShopifyAdmin
from switchboard.integrations.shopify.app import ShopifyApp
from switchboard.metrics import Metrics
from switchboard.observability import get_logger
from switchboard.services.accounts import AccountService
from switchboard.services.billing import BillingService
from switchboard.services.callbacks import CallbackService
from switchboard.services.integration_keys import IntegrationKeyService, PartnerCredentials
from switchboard.services.logs import LogService
from switchboard.services.messaging import MessagingService
from switchboard.services.personal_data import PersonalDataService
from switchboard.services.statistics import StatisticsService
from switchboard.services.tokens import TokenService
from switchboard.services.verification import VerificationService
from switchboard.silentauth.number_verification import NumberVerificationClient
from switchboard.silentauth.oidc import OidcClient
from switchboard.silentauth.operators import Operator, OperatorDirectory
from switchboard.silentauth.service import SilentAuthService
from switchboard.storage.account_cache import CachedAccountStore
from switchboard.storage.base import AccountStore
from switchboard.storage.idempotency import IdempotencyStore
from switchboard.storage.sql import migrate
from switchboard.storage.sql.accounts import SqlAccountStore
from switchboard.storage.sql.automations import SqlAutomationStore
from switchboard.storage.sql.callbacks import SqlCallbackEvents, SqlCallbackStore
from switchboard.storage.sql.clevertap import SqlCleverTapReports, SqlCleverTapStore
from switchboard.storage.sql.console import SqlConsoleStore
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.fraud import SqlCounterStore, SqlFraudStore
from switchboard.storage.sql.idempotency import SqlIdempotencyStore
from switchboard.storage.sql.integration_keys import SqlIntegrationKeyStore
from switchboard.storage.sql.logs import SqlLogStore
from switchboard.storage.sql.messaging import SqlMessagingStore
from switchboard.storage.sql.notify import PgWakeChannel
from switchboard.storage.sql.personal_data import SqlPersonalData
from switchboard.storage.sql.pipedrive import SqlPipedriveStore
from switchboard.storage.sql.presence import SqlWorkerPresence
from switchboard.storage.sql.prices import SqlPriceStore
from switchboard.storage.sql.queue import SqlMessageQueue, StatusListener, StatusListeners
from switchboard.storage.sql.sandbox import SqlOutbox
from switchboard.storage.sql.shopify import SqlShopifyStore
from switchboard.storage.sql.silent_auth import SqlSilentAuthStore
from switchboard.storage.sql.statistics import SqlStatistics, StatisticsRecorder
from switchboard.storage.sql.steps import SqlFallbackSteps
from switchboard.storage.sql.usage import SqlUsageReports
from switchboard.storage.sql.verifications import SqlVerificationStore, VerificationListener
from switchboard.storage.sql.wallets import SqlCharges, SqlWalletStore
from switchboard.vault import Vault, derive_key
from switchboard.worker.batching import GroupCommit
from switchboard.worker.dispatcher import Dispatcher
from switchboard.worker.shares import LimitShares, Shared
from switchboard.worker.wake import WakeListener, WakeSender
from switchboard.worker.webhooks import WebhookDispatcher

log = get_logger("switchboard.bootstrap")


@dataclass(frozen=True, slots=True)
class Secrets:
    token_signing_key: bytes
    otp_pepper: bytes
    # seals secrets kept in the database (vault.py); when not configured on PostgreSQL it is
    # derived from the pepper, which every process already shares
    data_key: bytes


def resolve_secrets(settings: Settings) -> Secrets:
    """Configured secrets, or, on SQLite only, ones generated once and kept beside the database."""
    configured = settings.data_key.encode() if settings.data_key else None
    if settings.token_signing_key and settings.otp_pepper:
        pepper = settings.otp_pepper.encode()
        return Secrets(
            settings.token_signing_key.encode(),
            pepper,
            derive_key(configured or pepper, "switchboard data key"),
        )
    path = settings.sqlite_path
    if path is None:
        missing = [
            name for name in ("token_signing_key", "otp_pepper") if not getattr(settings, name)
        ]
        raise ConfigurationError(
            f"{', '.join(missing)} must be configured with PostgreSQL (every process must share "
            "them); set SWITCHBOARD_TOKEN_SIGNING_KEY and SWITCHBOARD_OTP_PEPPER "
            "(64+ characters each, e.g. `openssl rand -hex 32`)"
        )
    key_file = Path(f"{path}.keys")
    stored: dict[str, str] = {}
    if key_file.exists():
        try:
            stored = json.loads(key_file.read_text())
        except ValueError:
            raise ConfigurationError(f"{key_file} is not valid JSON") from None
    changed = False
    for name in ("token_signing_key", "otp_pepper", "data_key"):
        if not stored.get(name):
            stored[name] = secrets.token_hex(64)
            changed = True
    if changed:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(stored, handle)
    return Secrets(
        (settings.token_signing_key or stored["token_signing_key"]).encode(),
        (settings.otp_pepper or stored["otp_pepper"]).encode(),
        derive_key(configured or stored["data_key"].encode(), "switchboard data key"),
    )


class QueueReportSink:
    """Drivers hand receipts and inbound messages here; they are stored before being acked.

    Receipts that arrive together are stored together (group commit), each caller still
    waiting for its own to be durable.
    """

    def __init__(self, queue: SqlMessageQueue, clock: Clock, metrics: Metrics) -> None:
        self._queue = queue
        self._clock = clock
        self._metrics = metrics
        self._reports: GroupCommit[DeliveryReport, float | None] = GroupCommit(self._store)

    async def _store(self, reports: list[DeliveryReport]) -> list[float | None]:
        return await self._queue.record_reports(reports, self._clock.now())

    async def on_report(self, report: DeliveryReport) -> None:
        latency = await self._reports.submit(report)
        self._metrics.receipts.labels(report.connector, report.state.value).inc()
        if latency is not None:
            self._metrics.receipt_latency.labels(report.connector).observe(latency)

    async def on_inbound(self, message: InboundMessage) -> None:
        await self._queue.record_inbound(message)

    async def drain(self) -> None:
        """Write the receipts already handed over (at shutdown, once the drivers are closed)."""
        await self._reports.drain()


def build_driver(connector: ConnectorSettings, outbox: SqlOutbox, clock: Clock) -> ChannelDriver:
    """A driver from its connector block; its own options model validates the keys."""
    options = connector.options()
    try:
        if connector.type == "sandbox":
            return SandboxDriver(connector.name, SandboxOptions(**options), outbox)
        if connector.type == "smpp":
            from switchboard.channels.smpp.driver import SmppDriver, SmppOptions

            return SmppDriver(connector.name, SmppOptions(**options), clock=clock)
        if connector.type == "whatsapp":
            from switchboard.channels.whatsapp import WhatsAppDriver, WhatsAppOptions

            return WhatsAppDriver(connector.name, WhatsAppOptions(**options))
        if connector.type == "rcs":
            from switchboard.channels.rcs import RcsDriver, RcsOptions

            return RcsDriver(connector.name, RcsOptions(**options))
        if connector.type == "smtp":
            from switchboard.channels.email import EmailDriver, EmailOptions

            return EmailDriver(connector.name, EmailOptions(**options))
    except ValidationError as exc:
        problems = "; ".join(
            f"connectors.{connector.name}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
    raise ConfigurationError(
        f"invalid configuration: connectors.{connector.name}.type: unknown type "
        f"'{connector.type}' (sandbox, smpp, whatsapp, rcs, smtp)"
    )


def build_routes(settings: Settings, known: set[str]) -> list[Route]:
    routes = []
    for index, route in enumerate(settings.routes):
        for name in route.connectors:
            if name not in known:
                raise ConfigurationError(
                    f"invalid configuration: routes.{index}.connectors: unknown connector '{name}'"
                )
        routes.append(
            Route(
                channel=Channel(route.channel),
                connectors=tuple(route.connectors),
                prefixes=tuple(p.lstrip("+") for p in route.prefixes),
                message_types=tuple(MessageType(t) for t in route.message_types),
            )
        )
    return routes


def build_billing(
    settings: Settings,
    database: Database,
    accounts: AccountStore,
    clock: Clock,
    *,
    wake_webhooks: Callable[[], None],
) -> tuple[SqlCharges | None, BillingService]:
    """The charging hooks (None while `billing.enabled` is false) and the billing service."""
    options = settings.billing
    currency = Currency(options.currency, options.minor_units)
    default_price = (
        None if options.default_price is None else currency.to_minor(options.default_price)
    )
    threshold = (
        None
        if options.low_balance_threshold is None
        else currency.to_minor(options.low_balance_threshold)
    )
    free = frozenset(settings.sandbox.test_numbers)  # never reach a carrier, never cost
    charges = None
    if options.enabled:
        charges = SqlCharges(
            clock, currency, default_price=default_price, refund_rejected=options.refund_rejected,
            low_balance_threshold=threshold, free_destinations=free, wake=wake_webhooks,
        )  # fmt: skip
    service = BillingService(
        SqlPriceStore(database), SqlWalletStore(database), SqlUsageReports(database), accounts,
        clock, currency=currency, enabled=options.enabled, default_price=default_price,
        low_balance_threshold=threshold, free_destinations=free,
    )  # fmt: skip
    return charges, service


def build_silent_auth(
    settings: Settings,
    database: Database,
    verification: VerificationService,
    clock: Clock,
    *,
    pepper: bytes,
    vault: Vault,
    listener: VerificationListener,
    charges: SqlCharges | None,
    wake: Callable[[], None],
) -> SilentAuthService:
    """flowType=SAUTH (ADR 0017): the operators' keys are read here, so a bad one stops start-up."""
    options = settings.silent_auth
    return SilentAuthService(
        SqlSilentAuthStore(database, listener, charges=charges),
        verification,
        OperatorDirectory([Operator.from_settings(o) for o in options.operators]),
        OidcClient(timeout_s=options.http_timeout_s, cache_s=options.discovery_cache_s),
        NumberVerificationClient(timeout_s=options.http_timeout_s),
        clock,
        pepper=pepper,
        vault=vault,
        timeout_s=options.timeout_s,
        redirect_url=options.redirect_url,
        on_queued=wake,
    )


def build_fraud(settings: Settings, database: Database, clock: Clock) -> FraudGuard:
    """The fraud guard: its records in the database, its counters there too or in Redis."""
    options = settings.fraud
    counters: CounterStore = SqlCounterStore(database)
    if options.redis_url:
        from switchboard.fraud.redis_counters import FallbackCounterStore, RedisCounterStore

        in_redis = RedisCounterStore(
            options.redis_url,
            timeout_s=options.redis_timeout_s,
            ttl_s=options.baseline_s + 7200,
            key_prefix=options.redis_key_prefix,
        )
        counters = (
            FallbackCounterStore(in_redis, counters)
            if options.redis_fallback_to_database
            else in_redis
        )
    return FraudGuard(
        SqlFraudStore(database),
        counters,
        clock,
        options,
        settings_cache_s=settings.tokens.account_cache_s,
    )


class Wake:
    """Wakes a local loop (the dispatcher, the callback dispatcher) and, when the workers run in
    another process on this host, that process too (worker/wake.py)."""

    def __init__(self, local: Callable[[], None], remote: Callable[[], None] | None) -> None:
        self._local = local
        self._remote = remote
        self.workers_here = False

    def __call__(self) -> None:
        self._local()
        if self._remote is not None and not self.workers_here:
            self._remote()


def build_clevertap(
    settings: Settings,
    database: Database,
    messaging: MessagingService,
    accounts: AccountService,
    partners: PartnerCredentials,
    clock: Clock,
    *,
    check_url: Callable[[str], Awaitable[object]],
) -> CleverTapService:
    """CleverTap's sends and settings; its reports are `SqlCleverTapReports` (a listener)."""
    credentials = CleverTapCredentials(
        partners, accounts, clock, ttl_s=settings.clevertap.password_cache_s
    )
    return CleverTapService(
        SqlCleverTapStore(database),
        messaging,
        accounts,
        clock,
        credentials=credentials,
        check_url=check_url,
        default_country_code=settings.clevertap.default_country_code,
        max_records=settings.clevertap.max_records,
    )


@dataclass
class Container:
    settings: Settings
    clock: Clock
    database: Database
    secrets: Secrets
    accounts: AccountService
    tokens: TokenService
    verification: VerificationService
    messaging: MessagingService
    queue: SqlMessageQueue
    outbox: SqlOutbox
    drivers: dict[str, ChannelDriver]
    dispatcher: Dispatcher
    sink: QueueReportSink
    metrics: Metrics
    callbacks: CallbackService
    webhooks: WebhookDispatcher
    billing: BillingService
    integration_keys: IntegrationKeyService
    partners: PartnerCredentials
    vault: Vault
    idempotency: IdempotencyStore
    silent_auth: SilentAuthService
    automations: AutomationService
    automation_runner: AutomationRunner
    clevertap: CleverTapService
    personal_data: PersonalDataService
    fraud: FraudGuard
    wakes: tuple[Wake, ...] = ()
    pg_wake: PgWakeChannel | None = None
    shares: LimitShares | None = None
    console: ConsoleServices | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _started: bool = False
    _sharing: bool = False
    _wake_listener: WakeListener | None = None
    pipedrive: PipedriveApp | None = None
    shopify: ShopifyApp | None = None  # while [integrations.shopify] is configured

    async def start(self, *, run_workers: bool | None = None, migrate_sqlite: bool = True) -> None:
        if self._started:
            return
        if self.database.is_sqlite and migrate_sqlite:
            await asyncio.to_thread(migrate.upgrade, self.settings.database_url)
        elif not await asyncio.to_thread(migrate.is_current, self.settings.database_url):
            raise ConfigurationError(
                "the database schema is not up to date: run `switchboard db upgrade` first"
            )
        elif await self.database.bypasses_row_security():
            log.warning(
                "the database role is a superuser or has BYPASSRLS: row-level security does not "
                "hold; connect as an ordinary role that owns the database (ADR 0020)"
            )
        self._started = True
        workers = self.settings.server.run_workers if run_workers is None else run_workers
        if workers:
            await self.start_workers()

    async def start_workers(self) -> None:
        for wake in self.wakes:
            wake.workers_here = True
        path = self.settings.worker.wake_socket
        if self.pg_wake is not None:  # API processes anywhere NOTIFY; this worker LISTENs
            listen = self.pg_wake.listen(self._wake_all)
            self._tasks.append(asyncio.create_task(listen, name="wake-listener"))
        elif path:
            self._wake_listener = WakeListener(path, self._wake_all)
            self._wake_listener.start()
        if self.shares is not None:  # this worker's share first: its drivers open only theirs
            with contextlib.suppress(Exception):  # else the loop below retries
                await self.shares.update()
        for driver in self.drivers.values():
            await driver.start(self.sink)
        if self.shares is not None:
            self._tasks.append(asyncio.create_task(self.shares.run(), name="limit-shares"))
            self._sharing = True
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="dispatcher"))
        self._tasks.append(asyncio.create_task(self.webhooks.run(), name="webhooks"))
        self._tasks.append(
            asyncio.create_task(self.automation_runner.run(), name="automation-runner")
        )
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        if self.pipedrive is not None:
            self._tasks.append(asyncio.create_task(self.pipedrive.run_notes(), name="pd-notes"))
        if self.shopify is not None:
            self._tasks.append(asyncio.create_task(self.shopify.run(), name="shopify-webhooks"))

    async def _housekeeping(self) -> None:
        while True:
            try:
                await self.verification.expire_due()
                await self.queue.rematch_parked(self.clock.now())
                await self.messaging.sweep_abandoned_campaigns()
                await self.idempotency.purge_expired(self.clock.now())
            except Exception:  # a database hiccup: try again next round
                log.exception("housekeeping failed")
            await asyncio.sleep(5)

    def _wake_all(self) -> None:
        self.dispatcher.wake()
        self.webhooks.wake()

    async def stop(self) -> None:
        if self._wake_listener is not None:
            self._wake_listener.close()
            self._wake_listener = None
        grace = self.settings.server.shutdown_grace_s
        self.automation_runner.stop()
        await self.dispatcher.stop(grace)
        await self.webhooks.stop(grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for driver in self.drivers.values():
            try:
                await asyncio.wait_for(driver.close(), timeout=grace or None)
            except Exception:  # closing the rest matters more
                log.exception("closing connector failed", connector=driver.name)
        await self.sink.drain()
        await self.webhooks.close()
        if self.shares is not None and self._sharing:
            await self.shares.leave()
            self._sharing = False
        if self.pipedrive is not None:
            await self.pipedrive.close()
        if self.shopify is not None:
            await self.shopify.close()
        try:  # the guard's last second of counts
            await self.fraud.sync()
        except Exception:
            log.exception("fraud guard: last sync failed")
        await self.fraud.close()
        if self.pg_wake is not None:
            await self.pg_wake.close()
        await self.database.dispose()
        self._started = False


def build_idempotency(database: Database) -> IdempotencyStore:
    return SqlIdempotencyStore(database)


def build_pipedrive(
    settings: Settings,
    database: Database,
    keys: Secrets,
    clock: Clock,
    *,
    messaging: MessagingService,
    accounts: AccountService,
    partners: PartnerCredentials,
    vault: Vault,
    currency: Currency,
) -> PipedriveApp | None:
    """The Pipedrive app, when `[integrations.pipedrive]` is configured."""
    options = settings.integrations.pipedrive
    if options is None:
        return None
    from switchboard.integrations.pipedrive.client import PipedriveClient
    from switchboard.integrations.pipedrive.sessions import PageAuthenticator
    from switchboard.integrations.pipedrive.tokens import CompanyTokens

    store = SqlPipedriveStore(database)
    client = PipedriveClient(options)
    pages = PageAuthenticator(
        extension_secret=options.extension_secret,
        form_key=derive_key(keys.data_key, "pipedrive page sessions"),
        clock=clock,
    )
    return PipedriveApp(
        options, store, CompanyTokens(store, vault, client, clock), client,
        messaging=messaging, accounts=accounts, partners=partners, clock=clock,
        currency=currency, pages=pages,
    )  # fmt: skip


def build_automations(
    settings: Settings,
    database: Database,
    queue: SqlMessageQueue,
    charges: SqlCharges | None,
    messaging: MessagingService,
    accounts: AccountService,
    clock: Clock,
    *,
    wake_dispatcher: Callable[[], None],
) -> tuple[AutomationService, AutomationRunner]:
    """The automation engine (the Shopify app's and POST /api/v1/events' sink) and its runner."""
    service = AutomationService(
        SqlAutomationStore(database, queue, charges=charges),
        messaging,
        accounts,
        clock,
        settings.automations,
        on_queued=wake_dispatcher,
    )
    return service, AutomationRunner(service, settings.automations)


def build_shopify(
    settings: ShopifySettings,
    database: Database,
    vault: Vault,
    events: EventSink,
    personal_data: PersonalDataService,
    clock: Clock,
    keys: Secrets,
    *,
    on_installed: Callable[[str, str], Awaitable[object]] | None = None,
    on_removed: Callable[[str, str], Awaitable[object]] | None = None,
) -> ShopifyApp:
    """The Shopify app: its store, Shopify's admin endpoints, the event sink it feeds."""
    return ShopifyApp(
        settings,
        SqlShopifyStore(database),
        ShopifyAdmin(settings),
        vault,
        events,
        personal_data,
        clock,
        link_key=derive_key(keys.data_key, "shopify install link"),
        on_installed=on_installed,
        on_removed=on_removed,
    )


def build_container(settings: Settings, *, clock: Clock | None = None) -> Container:
    clock = clock or SystemClock()
    metrics = Metrics()
    keys = resolve_secrets(settings)
    if settings.sqlite_path is not None:
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    database = Database(settings.database_url)
    account_store = CachedAccountStore(
        SqlAccountStore(database), ttl_s=settings.tokens.account_cache_s
    )
    overlap = timedelta(seconds=settings.webhooks.rotation_overlap_s)
    callback_store = SqlCallbackStore(database, rotation_overlap=overlap)
    address_policy = AddressPolicy.from_settings(settings.webhooks)
    webhooks = WebhookDispatcher(
        callback_store,
        WebhookSender.from_settings(settings.webhooks, address_policy, clock=clock),
        clock,
        settings.webhooks,
        formats={CLEVERTAP_REPORT_EVENT: CleverTapReportFormat()},
    )
    # Wake-ups for workers in other processes: NOTIFY on PostgreSQL (any host), else the
    # Unix socket `serve --processes` sets up (one host).
    pg_wake = None if database.is_sqlite else PgWakeChannel(settings.database_url)
    remote: Callable[[], None] | None = pg_wake
    if remote is None and settings.worker.wake_socket:
        remote = WakeSender(settings.worker.wake_socket)
    wake_webhooks = Wake(webhooks.wake, remote)
    callback_events = SqlCallbackEvents(wake=wake_webhooks)
    charges, billing = build_billing(
        settings, database, account_store, clock, wake_webhooks=wake_webhooks
    )
    clevertap_reports = SqlCleverTapReports(wake=wake_webhooks)
    statistics = StatisticsRecorder(sqlite=database.is_sqlite, inner=callback_events)
    listeners: StatusListener = StatusListeners(
        *(() if charges is None else (charges,)), callback_events, statistics, clevertap_reports
    )
    queue = SqlMessageQueue(database, listeners)
    outbox = SqlOutbox(database, limit=settings.sandbox.outbox_limit)
    drivers: dict[str, ChannelDriver] = {
        SANDBOX: SandboxDriver(
            SANDBOX, SandboxOptions(delivery_delay_s=settings.sandbox.delivery_delay_s), outbox
        )
    }
    for connector in settings.connectors:
        if connector.name in drivers and connector.name != SANDBOX:
            raise ConfigurationError(
                f"invalid configuration: connectors: duplicate name '{connector.name}'"
            )
        drivers[connector.name] = build_driver(connector, outbox, clock)
    routes = build_routes(settings, set(drivers))
    dispatcher = Dispatcher(
        queue,
        drivers,
        routes,
        clock,
        settings.worker,
        test_numbers=frozenset(settings.sandbox.test_numbers),
        fallback_step_timeout_s=settings.otp.fallback_step_timeout_s,
        metrics=metrics,
        steps=SqlFallbackSteps(database),
    )
    wake_dispatcher = Wake(dispatcher.wake, remote)
    lockout = settings.lockout
    accounts = AccountService(
        account_store,
        clock,
        LockoutPolicy(
            max_failures=lockout.max_failures,
            window=timedelta(seconds=lockout.window_s),
            lock=timedelta(seconds=lockout.lock_s),
            hard_lock_failures=lockout.hard_lock_failures,
        ),
        max_concurrent_hashes=lockout.max_concurrent_hashes,
    )
    tokens = TokenService(
        account_store,
        clock,
        signing_key=keys.token_signing_key,
        ttl_s=settings.tokens.ttl_s,
        issuer=settings.tokens.issuer,
        audience=settings.tokens.audience,
        leeway_s=settings.tokens.leeway_s,
    )
    fraud = build_fraud(settings, database, clock)
    verification = VerificationService(
        SqlVerificationStore(database, statistics, charges=charges),
        clock,
        pepper=keys.otp_pepper,
        otp=settings.otp,
        test_numbers=settings.sandbox.test_numbers,
        on_queued=wake_dispatcher,
        guard=fraud,
    )
    integration_keys = IntegrationKeyService(
        SqlIntegrationKeyStore(database), account_store, clock, pepper=keys.otp_pepper
    )
    partners = PartnerCredentials(accounts, integration_keys)
    messaging = MessagingService(
        SqlMessagingStore(database, queue, charges=charges),
        clock,
        settings.messaging,
        on_queued=wake_dispatcher,
        pricing=billing,
    )
    vault = Vault(keys.data_key)
    automations, automation_runner = build_automations(
        settings, database, queue, charges, messaging, accounts, clock,
        wake_dispatcher=wake_dispatcher,
    )  # fmt: skip
    personal_data = PersonalDataService(SqlPersonalData(database), clock)
    shopify = None
    if settings.integrations.shopify is not None:

        async def install_automations(account_id: str, source: str) -> object:
            # a new shop works at once: the engine's built-in rules, scoped to that shop
            return await automations.install_defaults(account_id, source=source)

        async def remove_automations(account_id: str, source: str) -> object:
            return await automations.forget_source(account_id, source)

        shopify = build_shopify(
            settings.integrations.shopify, database, vault, automations, personal_data, clock,
            keys, on_installed=install_automations, on_removed=remove_automations,
        )  # fmt: skip
    container = Container(
        settings=settings,
        clock=clock,
        database=database,
        secrets=keys,
        accounts=accounts,
        tokens=tokens,
        verification=verification,
        messaging=messaging,
        queue=queue,
        outbox=outbox,
        drivers=drivers,
        dispatcher=dispatcher,
        sink=QueueReportSink(queue, clock, metrics),
        metrics=metrics,
        callbacks=CallbackService(
            callback_store,
            clock,
            check_url=address_policy.check,
            rotation_overlap=overlap,
            on_queued=wake_webhooks,
        ),
        webhooks=webhooks,
        billing=billing,
        integration_keys=integration_keys,
        partners=partners,
        vault=vault,
        idempotency=build_idempotency(database),
        silent_auth=build_silent_auth(
            settings,
            database,
            verification,
            clock,
            pepper=keys.otp_pepper,
            vault=vault,
            listener=statistics,
            charges=charges,
            wake=wake_dispatcher,
        ),
        automations=automations,
        automation_runner=automation_runner,
        clevertap=build_clevertap(
            settings,
            database,
            messaging,
            accounts,
            partners,
            clock,
            check_url=address_policy.check,
        ),
        personal_data=personal_data,
        shopify=shopify,
        fraud=fraud,
        wakes=(wake_dispatcher, wake_webhooks),
        pg_wake=pg_wake,
        shares=LimitShares(
            SqlWorkerPresence(database),
            [webhooks, *(d for d in drivers.values() if isinstance(d, Shared))],
            clock,
            interval_s=settings.worker.presence_interval_s,
            ttl_s=settings.worker.presence_ttl_s,
        ),
        pipedrive=build_pipedrive(
            settings,
            database,
            keys,
            clock,
            messaging=messaging,
            accounts=accounts,
            partners=partners,
            vault=vault,
            currency=billing.currency,
        ),
    )
    container.console = build_console(container)
    return container


def build_console(container: Container) -> ConsoleServices:
    """The console's view of the services (console/services.py) and its own stores."""
    store = SqlConsoleStore(container.database)
    operators = OperatorService(store, container.clock)
    settings = container.settings
    return ConsoleServices(
        settings=settings.console,
        clock=container.clock,
        accounts=container.accounts,
        verification=container.verification,
        messaging=container.messaging,
        callbacks=container.callbacks,
        billing=container.billing,
        integration_keys=container.integration_keys,
        logs=LogService(SqlLogStore(container.database)),
        statistics=StatisticsService(SqlStatistics(container.database), container.clock),
        sessions=SessionManager(
            store,
            container.accounts,
            operators,
            container.clock,
            key=container.secrets.otp_pepper,
            ttl=timedelta(seconds=settings.console.session_ttl_s),
            vault=container.vault,
        ),
        operators=operators,
        outbox=container.outbox,
        queue_depth=container.queue.queue_depth,
        connectors=lambda: connector_views(container.drivers),
        max_upload_bytes=settings.messaging.max_upload_bytes,
        integrations=_integration_panels(container),
        automations=container.automations,
        clevertap=container.clevertap,
        fraud=container.fraud,
    )


def _integration_panels(container: Container) -> list[IntegrationPanel]:
    panels = [
        IntegrationPanel(
            name="CleverTap",
            description="this server as CleverTap's Generic SMS provider: reports and replies",
            href="/console/clevertap",
        ),
        IntegrationPanel(
            name="Automations",
            description="SMS on your CRM's events: order confirmations, reminders, reviews",
            href="/console/automations",
        ),
    ]
    if container.shopify is not None:
        panels.append(
            IntegrationPanel(
                name="Shopify",
                description="install link: POST /api/v1/integrations/shopify/install-link",
                href="/docs",
            )
        )
    if container.pipedrive is not None:
        panels.append(
            IntegrationPanel(
                name="Pipedrive",
                description="installed from Pipedrive's Marketplace; reports open from Pipedrive",
                href="/docs",
            )
        )
    return panels
