"""Settings: a TOML file, each key overridable as SWITCHBOARD_<KEY> or SWITCHBOARD_<SECTION>__<KEY>."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from switchboard.errors import ConfigurationError

CONFIG_ENV = "SWITCHBOARD_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    run_workers: bool = True
    # API processes sharing the port (SO_REUSEPORT); the first also runs the workers.
    processes: int = Field(default=1, ge=1, le=64)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    access_log: bool = True


class TokenSettings(_Section):
    ttl_s: int = Field(default=3600, ge=60, le=10 * 365 * 86400)
    issuer: str = "switchboard"
    audience: str = "switchboard-api"
    leeway_s: int = Field(default=30, ge=0, le=300)
    # How long the token check may use an account read earlier: a token revoked or an account
    # disabled by another process (the CLI) is refused at most this much later. 0 reads always.
    account_cache_s: float = Field(default=2.0, ge=0, le=60)


class LockoutSettings(_Section):
    """Brute-force protection of the token endpoint (research API-5)."""

    max_failures: int = Field(default=10, ge=1)
    window_s: int = Field(default=900, ge=1)
    lock_s: int = Field(default=900, ge=1)
    hard_lock_failures: int = Field(default=100, ge=1)
    max_concurrent_hashes: int = Field(default=4, ge=1)


class OtpSettings(_Section):
    """Account defaults for VerifyNow; each account may override them."""

    default_length: int = Field(default=4, ge=4, le=8)
    default_timeout_s: int = Field(default=60, ge=20, le=600)
    max_attempts: int = Field(default=5, ge=1, le=20)
    resend_cooldown_s: int = Field(default=30, ge=0)
    sends_per_10_min: int = Field(default=5, ge=1)
    sends_per_day: int = Field(default=10, ge=1)
    account_daily_quota: int = Field(default=10_000, ge=1)
    brand: str = "Switchboard"
    sender_ids: dict[str, str] = Field(default_factory=lambda: {"91": "UTOMOB", "*": "SWBOARD"})
    fallback_step_timeout_s: int = Field(default=30, ge=1)


class SandboxSettings(_Section):
    """Test numbers (E.164 → fixed code) never reach a carrier."""

    test_numbers: dict[str, str] = Field(default_factory=dict)
    outbox_limit: int = Field(default=1000, ge=1)
    delivery_delay_s: float = Field(default=0.0, ge=0)

    @field_validator("test_numbers")
    @classmethod
    def _codes_are_digits(cls, value: dict[str, str]) -> dict[str, str]:
        for number, code in value.items():
            if not code.isdigit() or not 4 <= len(code) <= 8:
                raise ValueError(f"test number {number}: code must be 4-8 digits")
        return value


class ApiSettings(_Section):
    # "mapped": HTTP status follows the response code (702 → 400 …); "200": always HTTP 200 with the
    # code in the body, as some Message Central clients expect (research/mission-anchors.md §1.3).
    error_http_status: Literal["mapped", "200"] = "mapped"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)


class WebhookSettings(_Section):
    """Customer callbacks. Addresses in `allow_networks` (e.g. 127.0.0.1/32) are the only
    private targets allowed; they may also use http and any port."""

    allow_networks: list[str] = Field(default_factory=list)
    require_https: bool = True
    allowed_ports: list[int] = Field(default_factory=lambda: [443, 8443])  # [] allows any port
    connect_timeout_s: float = Field(default=5.0, gt=0)
    total_timeout_s: float = Field(default=15.0, gt=0)
    max_concurrency_per_endpoint: int = Field(default=4, ge=1)
    max_in_flight: int = Field(default=100, ge=1)
    batch_size: int = Field(default=50, ge=1, le=1000)
    poll_interval_s: float = Field(default=1.0, gt=0)
    # the previous secret keeps signing this long after a rotation (research WO-2)
    rotation_overlap_s: int = Field(default=86400, ge=0)

    @field_validator("allowed_ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        if any(not 0 < port < 65536 for port in value):
            raise ValueError("ports are 1-65535")
        return value


class WorkerSettings(_Section):
    batch_size: int = Field(default=50, ge=1, le=1000)
    # Bulk (transactional, promotional) messages in flight per worker: each waits in a driver
    # ahead of any OTP that comes after it, so keep it near what the connectors send in a
    # fraction of a second (window x binds, plus a few tenths of a second of TPS).
    bulk_in_flight: int = Field(default=128, ge=1, le=10_000)
    lease_s: float = Field(default=60.0, gt=0)
    poll_interval_s: float = Field(default=0.5, gt=0)
    # A Unix datagram socket through which API processes on this host wake the worker process
    # (set by `serve --processes N`; see worker/wake.py). None: poll only.
    wake_socket: str | None = None
    max_attempts: int = Field(default=8, ge=1)
    retry_base_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=3600.0, gt=0)
    # Workers beat this often; one unseen for presence_ttl_s no longer holds a share of the
    # cluster-wide limits (connector TPS, callbacks per endpoint).
    presence_interval_s: float = Field(default=5.0, gt=0)
    presence_ttl_s: float = Field(default=15.0, gt=0)


class MessagingSettings(_Section):
    """MessageNow: list and upload limits, text rules, the promotional quiet window."""

    max_list_recipients: int = Field(default=1000, ge=1, le=100_000)
    max_segments: int = Field(default=10, ge=1, le=255)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    max_upload_rows: int = Field(default=1_000_000, ge=1)
    ingest_batch_size: int = Field(default=2000, ge=10, le=50_000)
    max_schedule_days: int = Field(default=30, ge=1)
    # A campaign that has staged nothing for this long is taken as abandoned (the process
    # reading its upload died) and aborted: its held messages deleted, their charges refunded.
    staging_abandoned_s: int = Field(default=600, ge=1)
    # Promotional messages wait outside this local window, e.g. "10:00-21:00" (India's DLT rule).
    promotional_window: str | None = None
    promotional_timezone: str = "UTC"

    @field_validator("promotional_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import re

        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("use HH:MM-HH:MM, e.g. 10:00-21:00")
        return value

    @field_validator("promotional_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}'") from None
        return value


class BillingSettings(_Section):
    """Prices and wallets (docs/adr/0008). Off by default: sends are then never priced."""

    enabled: bool = False
    currency: str = "USD"
    # decimal places the ledger keeps; SMS prices need more than the currency's cents
    minor_units: int = Field(default=4, ge=0, le=8)
    # per unit, for sends no price rule matches; unset: such sends are refused
    default_price: Decimal | None = None
    refund_rejected: bool = False  # also refund messages a carrier reports REJECTD
    low_balance_threshold: Decimal | None = None  # default for customers without their own

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if len(value) != 3 or not value.isalpha():
            raise ValueError("use a three-letter ISO 4217 code, e.g. USD")
        return value.upper()

    @field_validator("default_price", "low_balance_threshold", mode="before")
    @classmethod
    def _decimal(cls, value: Any) -> Any:
        # TOML floats arrive as float: read them as written (0.1 → "0.1"), never binary.
        return str(value) if isinstance(value, float) else value

    @model_validator(mode="after")
    def _amounts_fit(self) -> BillingSettings:
        for name in ("default_price", "low_balance_threshold"):
            value: Decimal | None = getattr(self, name)
            if value is None:
                continue
            if value < 0:
                raise ValueError(f"{name} must not be negative")
            if value.scaleb(self.minor_units) != value.scaleb(self.minor_units).to_integral():
                raise ValueError(f"{name} has more than minor_units = {self.minor_units} decimals")
        return self


class PipedriveSettings(_Section):
    """The Pipedrive Marketplace app an operator registers in Pipedrive's Developer Hub."""

    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    # signs the `token` JWT of link actions; Pipedrive's default is the client secret
    jwt_secret: str | None = None
    oauth_base_url: str = "https://oauth.pipedrive.com"
    # the API is called on each company's `api_domain`; this is only the fallback when a token
    # response lacks one
    api_base_url: str = "https://api.pipedrive.com"
    # a company's `api_domain` must be https://<name>.pipedrive.com; this also lets a loopback
    # URL through (http://127.0.0.1:<port>: the test peer), never for production
    allow_loopback_api: bool = False
    # where Pipedrive reaches this server, e.g. https://sms.example.com (the OAuth redirect_uri
    # is this + /integrations/pipedrive/callback)
    public_url: str = "http://127.0.0.1:8080"
    timeout_s: float = Field(default=15.0, gt=0)
    max_recipients: int = Field(default=1000, ge=1, le=100_000)
    # a 429's Retry-After is honoured up to this long, this many times per request
    max_retry_after_s: float = Field(default=30.0, ge=0)
    max_rate_limit_retries: int = Field(default=5, ge=0)
    # notes logged on persons: retried with backoff this many times
    note_attempts: int = Field(default=8, ge=1)
    note_poll_s: float = Field(default=2.0, gt=0)

    @property
    def extension_secret(self) -> str:
        return self.jwt_secret or self.client_secret


class SilentAuthOperator(_Section):
    """One operator (or aggregator) offering CAMARA Number Verification for some prefixes."""

    name: str = Field(min_length=1, max_length=40)
    prefixes: list[str] = Field(min_length=1)  # digits of the E.164 number: "91", "4477"
    discovery_url: str  # its /.well-known/openid-configuration
    api_url: str  # the Number Verification API root, e.g. https://…/number-verification/v2
    client_id: str = Field(min_length=1)
    private_key_file: Path  # PEM, RSA (RS256) or EC P-256 (ES256)
    key_id: str | None = None  # the `kid` the operator knows the public key by
    hashed: bool = False  # send hashedPhoneNumber (SHA-256 of +E164) instead of phoneNumber
    purpose: str = "dpv:FraudPreventionAndDetection"

    @field_validator("prefixes")
    @classmethod
    def _digits(cls, value: list[str]) -> list[str]:
        prefixes = [p.strip().lstrip("+") for p in value]
        if any(not p.isdigit() for p in prefixes):
            raise ValueError("prefixes are digits of the E.164 number, e.g. 91 or 4477")
        return prefixes


class SilentAuthSettings(_Section):
    """flowType=SAUTH (docs/adr/0017): operators, and the OTP fallback's timer."""

    # the SMS (or the next channel) goes out if the device has not confirmed the number by then
    timeout_s: int = Field(default=25, ge=5, le=300)
    # our GET /verification/v3/silent/callback as the operators know it (registered with them)
    redirect_url: str | None = None
    discovery_cache_s: float = Field(default=3600.0, ge=0)
    http_timeout_s: float = Field(default=5.0, gt=0, le=30)
    operators: list[SilentAuthOperator] = Field(default_factory=list)

    @model_validator(mode="after")
    def _redirect_known(self) -> SilentAuthSettings:
        if self.operators and not self.redirect_url:
            raise ValueError("redirect_url is required when operators are configured")
        names = [o.name for o in self.operators]
        if len(set(names)) != len(names):
            raise ValueError("operator names must be unique")
        return self


class AutomationSettings(_Section):
    """The automation engine (docs/adr/0013): its runner and the defaults of new automations."""

    # how often the runner looks for due jobs; a publish runs its immediate sends itself
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    lease_s: float = Field(default=60.0, ge=1, le=3600)
    batch_size: int = Field(default=50, ge=1, le=1000)
    max_attempts: int = Field(default=5, ge=1, le=100)
    default_sender_id: str = Field(default="INFO", min_length=1, max_length=15)
    # quiet hours are read in the event's time zone, else the account's `timezone` setting, else this
    timezone: str = "UTC"
    # events are kept for dedupe (Shopify retries for 4 h) and for the closing-event check of
    # pending jobs (delays up to 60 days), then deleted
    event_retention_days: int = Field(default=90, ge=61, le=3650)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}'") from None
        return value


class CleverTapSettings(_Section):
    """CleverTap as a "Generic (Others)" SMS provider (issue #13, ADR 0011)."""

    # the country of a $$To rendered without one, unless the customer sets its own
    default_country_code: str = Field(default="91", pattern=r"^[1-9][0-9]{0,2}$")
    max_records: int = Field(default=1000, ge=1, le=10_000)  # CleverTap's largest batch
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # how long a verified password is remembered (one argon2 per message otherwise); 0: off
    password_cache_s: float = Field(default=30.0, ge=0, le=300)


class FraudSettings(_Section):
    """The fraud guard's platform defaults (docs/adr/0016); accounts override the rule modes
    with their `fraud.<rule>` settings."""

    enabled: bool = True
    # on | off | monitor per rule: prefix_velocity, client_ip, country, high_cost, conversion
    rules: dict[str, Literal["on", "off", "monitor"]] = Field(default_factory=dict)
    # country codes an account may send to when it has neither fraud_countries nor
    # allowed_countries; empty: every country
    countries: list[str] = Field(default_factory=list)
    # E.164 ranges never worth an OTP: international networks and satellite services
    high_cost_prefixes: list[str] = Field(
        default_factory=lambda: ["+870", "+881", "+882", "+883", "+979", "+808"]
    )
    wildcard_digits: int = Field(default=3, ge=1, le=6)
    prefix_window_s: int = Field(default=3600, ge=60)
    prefix_floor: int = Field(default=10, ge=1)
    prefix_factor: float = Field(default=5.0, ge=1)
    baseline_s: int = Field(default=86400, ge=3600, le=7 * 86400)
    prefix_block_s: int = Field(default=12 * 3600, ge=60)
    ip_window_s: int = Field(default=3600, ge=60)
    ip_limit: int = Field(default=10, ge=1)
    ip_block_s: int = Field(default=3600, ge=60)
    conversion_window_s: int = Field(default=3600, ge=300)
    conversion_grace_s: int = Field(default=120, ge=0)
    conversion_min_prefix_sends: int = Field(default=20, ge=5)
    conversion_min_country_sends: int = Field(default=50, ge=10)
    conversion_min_baseline_sends: int = Field(default=200, ge=20)
    conversion_normal: float = Field(default=0.5, gt=0, le=1)
    conversion_drop: float = Field(default=0.4, gt=0, lt=1)
    conversion_block_s: int = Field(default=3600, ge=60)
    # how stale this process's copy of the shared counters may get (other processes' sends)
    sync_interval_s: float = Field(default=1.0, ge=0, le=60)
    # a refused check: false answers 800 "fraud check unavailable" (accounts: fraud.fail_open)
    fail_open: bool = False
    # counters in Redis (INCR with expiry) instead of the database, e.g. redis://127.0.0.1:6379/0
    redis_url: str | None = None
    redis_fallback_to_database: bool = True
    redis_key_prefix: str = "switchboard:fraud"
    redis_timeout_s: float = Field(default=0.5, gt=0, le=10)

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: dict[str, str]) -> dict[str, str]:
        known = {"prefix_velocity", "client_ip", "country", "high_cost", "conversion"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(
                f"unknown rule {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return value

    @field_validator("high_cost_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not prefix.startswith("+") or not prefix[1:].isdigit():
                raise ValueError(f"'{prefix}' is not +digits")
        return value


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "console"


class ShopifySettings(_Section):
    """The Shopify app (docs/adr/0014): its Partner-dashboard credentials and Shopify's addresses."""

    api_key: str = Field(min_length=1)  # the app's client id
    api_secret: str = Field(min_length=1)  # signs OAuth queries and webhooks
    scopes: list[str] = Field(
        default_factory=lambda: [
            "read_orders",
            "read_customers",
            "read_fulfillments",
            "read_checkouts",
        ]
    )
    # `{shop}` is replaced by the shop's domain; tests point it at the local peer
    admin_base_url: str = "https://{shop}"
    api_version: str = "2026-10"  # the GraphQL Admin API version, pinned
    # our public base URL: the OAuth redirect_uri and the install links start with it
    app_url: str = Field(min_length=1)
    # subscribe the order/checkout/customer topics with webhookSubscriptionCreate at install;
    # off when shopify.app.toml declares them (the compliance topics always live there)
    subscribe_webhooks: bool = True
    install_link_ttl_s: int = Field(default=7 * 86400, ge=60)
    # an access token is renewed this long before it expires (they live one hour)
    refresh_margin_s: int = Field(default=300, ge=0, le=1800)
    poll_interval_s: float = Field(default=1.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)

    @field_validator("admin_base_url", "app_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("use an http(s):// URL")
        return value.rstrip("/")


class IntegrationsSettings(_Section):
    """Third-party apps built into Switchboard; each is off until its section is configured."""

    pipedrive: PipedriveSettings | None = None
    shopify: ShopifySettings | None = None


class ConsoleSettings(_Section):
    """The web console at /console/."""

    enabled: bool = True
    session_ttl_s: int = Field(default=8 * 3600, ge=300, le=30 * 86400)
    # "auto": the cookie is Secure except on plain http to a loopback address (a laptop)
    secure_cookie: Literal["auto", "always", "never"] = "auto"
    # origins besides the console's own allowed to post forms (behind a proxy that rewrites Host)
    trusted_origins: list[str] = Field(default_factory=list)


class ConnectorSettings(BaseModel):
    """One connector; `type` picks the driver, which validates the remaining keys itself."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)
    type: str = Field(min_length=1)

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RouteSettings(_Section):
    channel: Literal["SMS", "WHATSAPP", "RCS", "EMAIL"]
    connectors: list[str] = Field(min_length=1)
    prefixes: list[str] = Field(default_factory=list)
    message_types: list[Literal["OTP", "TRANSACTIONAL", "PROMOTIONAL"]] = Field(
        default_factory=list
    )


class IdempotencySettings(_Section):
    """`Idempotency-Key` on the sends (api/idempotency.py, ADR 0018)."""

    ttl_s: int = Field(default=86_400, ge=60)  # how long a key and its answer are kept
    # A request holding a key renews this lease while it runs; a key whose lease lapsed (its
    # process died) is free for a retry.
    lease_s: float = Field(default=30.0, ge=1)
    # How long a duplicate waits for the first request's answer before a 409 "in progress"
    wait_s: float = Field(default=30.0, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    database_url: str = "sqlite:///./switchboard.db"
    token_signing_key: str | None = None
    otp_pepper: str | None = None
    # seals OAuth tokens of installed apps in the database; generated beside the SQLite file,
    # derived from otp_pepper on PostgreSQL when not set (set it to rotate independently)
    data_key: str | None = None
    server: ServerSettings = ServerSettings()
    tokens: TokenSettings = TokenSettings()
    lockout: LockoutSettings = LockoutSettings()
    otp: OtpSettings = OtpSettings()
    sandbox: SandboxSettings = SandboxSettings()
    api: ApiSettings = ApiSettings()
    webhooks: WebhookSettings = WebhookSettings()
    worker: WorkerSettings = WorkerSettings()
    messaging: MessagingSettings = MessagingSettings()
    billing: BillingSettings = BillingSettings()
    integrations: IntegrationsSettings = IntegrationsSettings()
    fraud: FraudSettings = FraudSettings()
    logging: LoggingSettings = LoggingSettings()
    automations: AutomationSettings = AutomationSettings()
    clevertap: CleverTapSettings = CleverTapSettings()
    console: ConsoleSettings = ConsoleSettings()
    connectors: list[ConnectorSettings] = Field(default_factory=list)
    routes: list[RouteSettings] = Field(default_factory=list)
    idempotency: IdempotencySettings = IdempotencySettings()
    silent_auth: SilentAuthSettings = SilentAuthSettings()

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
        return value

    @field_validator("token_signing_key", "otp_pepper", "data_key")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        # HS512 wants a key of at least the hash size (RFC 7518 §3.2): 64 bytes.
        if value is not None and len(value.encode()) < 64:
            raise ValueError("must be at least 64 bytes (generate one with `openssl rand -hex 32`)")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        return Path(self.database_url.removeprefix("sqlite:///"))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from `config_file` (or $SWITCHBOARD_CONFIG) and the environment.

    Raises ConfigurationError naming the offending key.
    """
    path = config_file or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    if path is not None and not path.is_file():
        raise ConfigurationError(f"configuration file not found: {path}")

    class _FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    try:
        loaded = _FileSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
    except ValueError as exc:  # malformed TOML
        raise ConfigurationError(f"invalid configuration file {path}: {exc}") from None
    return Settings.model_validate(loaded.model_dump())
