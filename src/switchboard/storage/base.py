"""The store contract the services depend on; storage/sql implements it for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import datetime
from typing import Any, Protocol

from switchboard.domain.accounts import Account, FailureState
from switchboard.domain.callbacks import CallbackEndpoint, DeliveryState, WebhookDelivery
from switchboard.domain.campaigns import CampaignRecord
from switchboard.domain.integration_keys import IntegrationKey
from switchboard.domain.limits import SendLimits
from switchboard.domain.messages import Channel, MessageRecord
from switchboard.domain.pricing import PriceRule
from switchboard.domain.verification import CheckResult, VerificationRecord
from switchboard.domain.wallet import LedgerEntry, LedgerKind, UsageRow, Wallet


class AccountStore(Protocol):
    async def create_account(self, account: Account) -> None:
        """Insert a new account. Raises DuplicateResourceError when the id or e-mail is taken."""
        ...

    async def get_account(self, account_id: str) -> Account | None: ...

    async def find_account_by_email(self, email: str) -> Account | None:
        """The account with this e-mail, compared case-insensitively (the console's login)."""
        ...

    async def list_accounts(self) -> list[Account]: ...

    async def update_account(
        self, account_id: str, now: datetime, **changes: Any
    ) -> Account | None:
        """Apply column changes (password_hash, enabled, token_version, settings, callback_url …)."""
        ...

    async def record_login_failure(self, account_id: str, state: FailureState) -> None: ...

    async def reset_login_failures(self, account_id: str) -> None: ...


class IntegrationKeyStore(Protocol):
    async def add_key(self, key: IntegrationKey, digest: str) -> None:
        """Store a new key under its keyed digest (the key itself is never stored)."""
        ...

    async def list_keys(self, account_id: str) -> list[IntegrationKey]:
        """The account's keys, revoked ones included, oldest first."""
        ...

    async def find_by_digest(self, digest: str) -> IntegrationKey | None: ...

    async def revoke_key(
        self, account_id: str, key_id: str, now: datetime
    ) -> IntegrationKey | None:
        """Revoke (idempotent); None when the account has no such key."""
        ...

    async def touch_key(self, key_id: str, now: datetime) -> None:
        """Record a use (`last_used_at`)."""
        ...


class VerificationStore(Protocol):
    async def start_verification(
        self,
        verification: VerificationRecord,
        code_length: int,
        outbound: Sequence[MessageRecord],
        limits: SendLimits | None,
        now: datetime,
    ) -> None:
        """Atomically: check `limits` (raising 506/800), end the number's pending verification,
        store this one and queue its messages."""
        ...

    async def get_verification(
        self, account_id: str, verification_id: int
    ) -> VerificationRecord | None:
        """None for unknown ids and for other accounts' ids alike."""
        ...

    async def check_code(
        self,
        account_id: str,
        verification_id: int,
        matches: Callable[[VerificationRecord], bool],
        now: datetime,
    ) -> tuple[CheckResult, VerificationRecord | None]:
        """Count one attempt and compare atomically; at most one check ever returns VERIFIED."""
        ...

    async def cancel_verification(
        self, account_id: str, verification_id: int, now: datetime
    ) -> VerificationRecord | None: ...

    async def timeline(
        self, account_id: str, verification_id: int
    ) -> tuple[list[MessageRecord], list[dict[str, Any]]]: ...

    async def expire_due(self, now: datetime, limit: int = 500) -> list[VerificationRecord]: ...


class CallbackStore(Protocol):
    async def get_endpoint(self, account_id: str) -> CallbackEndpoint | None:
        """None when there is no such account."""
        ...

    async def update_endpoint(
        self,
        account_id: str,
        now: datetime,
        *,
        events: frozenset[str] | None = None,
        **changes: Any,
    ) -> CallbackEndpoint | None:
        """Set `url`, `secret`, `disabled_at`, `disabled_reason` and, if given, the events."""
        ...

    async def rotate_secret(
        self, account_id: str, secret: str, now: datetime
    ) -> CallbackEndpoint | None:
        """`secret` becomes current; the current one becomes the previous, rotated at `now`."""
        ...

    async def list_deliveries(
        self,
        account_id: str,
        *,
        status: DeliveryState | None = None,
        message_id: str | None = None,
        limit: int = 50,
    ) -> list[WebhookDelivery]: ...

    async def get_delivery(self, account_id: str, delivery_id: str) -> WebhookDelivery | None: ...

    async def replay(
        self, account_id: str, delivery_id: str, now: datetime
    ) -> WebhookDelivery | None:
        """Pending and due at `now` with attempts reset, same id; None while it is in flight."""
        ...


class MessagingStore(Protocol):
    async def accept_messages(self, batch: Sequence[MessageRecord]) -> None:
        """Queue messages in one transaction."""
        ...

    async def create_campaign(self, campaign: CampaignRecord) -> None:
        """Store a new STAGING campaign. Raises DuplicateResourceError when its id (which a
        caller may choose) is taken, by this customer or another."""
        ...

    async def stage_campaign_messages(self, batch: Sequence[MessageRecord]) -> None:
        """Store a batch of a campaign's messages as HELD (not yet sendable)."""
        ...

    async def release_campaign(
        self,
        campaign_id: str,
        *,
        total: int,
        invalid: int,
        errors: list[dict[str, Any]],
        not_before: datetime,
        now: datetime,
    ) -> None:
        """Make every staged message of the campaign sendable from `not_before`.

        Raises InvalidRequestError, releasing nothing, when the campaign is no longer STAGING
        (the sweeper gave it up as abandoned)."""
        ...

    async def abort_campaign(self, campaign_id: str, reason: str, now: datetime) -> None: ...

    async def get_campaign(self, account_id: str, campaign_id: str) -> CampaignRecord | None: ...

    async def campaign_counts(self, campaign_id: str) -> dict[str, int]: ...

    def campaign_messages(
        self, account_id: str, campaign_id: str, *, page_size: int = 5000
    ) -> AsyncIterator[MessageRecord]: ...

    async def cancel_campaign(self, account_id: str, campaign_id: str, now: datetime) -> int: ...

    async def stale_campaigns(self, idle_since: datetime, limit: int = 100) -> list[str]:
        """Campaigns still STAGING that have staged nothing since `idle_since`: the process
        staging them died (a live staging stores a batch every fraction of a second)."""
        ...


class PriceStore(Protocol):
    async def list_rules(
        self, account_id: str | None, channel: Channel | None = None
    ) -> list[PriceRule]:
        """One scope's rules: a customer's own, or the platform's (None)."""
        ...

    async def replace_rules(
        self, account_id: str | None, rules: Sequence[PriceRule], now: datetime
    ) -> int:
        """Atomically make the scope's table exactly `rules`."""
        ...

    async def merge_rules(self, rules: Sequence[PriceRule], now: datetime) -> int:
        """Add each rule, replacing the one with the same key."""
        ...

    async def remove_rule(self, rule: PriceRule) -> bool: ...

    async def rules_for_country(
        self, account_id: str, country_code: str, channels: Collection[Channel]
    ) -> list[PriceRule]:
        """Platform and own rules that can price sends into the country ('' for all)."""
        ...

    async def applicable_rules(
        self, account_id: str, channels: Collection[Channel], destinations: Collection[str]
    ) -> list[PriceRule]: ...

    async def volumes(self, account_id: str, period: str) -> dict[Channel, int]:
        """Units charged per channel in a calendar month ('2026-11')."""
        ...


class WalletStore(Protocol):
    async def get_wallet(self, account_id: str) -> Wallet | None: ...

    async def top_up(
        self,
        account_id: str,
        amount: int,
        now: datetime,
        *,
        reference: str | None = None,
        default_threshold: int | None = None,
    ) -> tuple[Wallet, LedgerEntry]:
        """Credit the wallet with a TOPUP entry. NotFoundError for an unknown account."""
        ...

    async def configure(self, account_id: str, now: datetime, **changes: int | None) -> Wallet:
        """Set `credit_limit` and/or `low_balance_threshold`."""
        ...

    async def ledger(
        self, account_id: str, *, before_id: int | None = None, limit: int = 50
    ) -> list[LedgerEntry]: ...

    async def held(self, account_id: str) -> int: ...

    async def ledger_sum(self, account_id: str) -> int: ...

    async def ledger_totals(
        self, account_id: str, start: datetime, end: datetime
    ) -> dict[LedgerKind, tuple[int, int]]: ...


class UsageReports(Protocol):
    async def usage(
        self, account_id: str, start: datetime, end: datetime, group_by: str
    ) -> list[UsageRow]:
        """Messages accepted in [start, end) grouped by day, channel, country or messageType."""
        ...


class PersonalDataStore(Protocol):
    async def export_recipient(
        self, account_id: str, destinations: Collection[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """The account's messages and verifications to these destinations (E.164 numbers,
        e-mail addresses) as JSON-ready rows, `{"messages": […], "verifications": […]}`;
        codes are never included."""
        ...

    async def erase_recipient(
        self, account_id: str, destinations: Collection[str], now: datetime
    ) -> int:
        """Blank the destinations and texts of the account's messages, verifications, sandbox
        outbox rows and callback bodies about them, in place: the rows (and the ledger that
        points at them) stay. Returns how many messages and verifications were erased;
        idempotent."""
        ...
