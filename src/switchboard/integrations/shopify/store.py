"""What the Shopify app keeps: the store protocol and its values (installed shops, webhooks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenPair:
    """An expiring offline token and its refresh token, both sealed by the vault."""

    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    scope: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Shop:
    shop: str  # the *.myshopify.com domain
    account_id: str
    name: str | None
    timezone: str | None
    tokens: TokenPair | None  # None once uninstalled
    token_version: int
    installed_at: datetime
    uninstalled_at: datetime | None = None

    @property
    def installed(self) -> bool:
        return self.tokens is not None and self.uninstalled_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedWebhook:
    id: int
    webhook_id: str
    shop: str
    topic: str
    body: bytes
    attempts: int
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DataExport:
    id: str
    shop: str
    account_id: str
    data_request_id: str | None
    customer_id: str | None
    document: str  # JSON
    created_at: datetime


class ShopifyStore(Protocol):
    async def add_state(
        self, digest: str, account_id: str, shop: str, expires_at: datetime
    ) -> None:
        """Remember an OAuth state nonce (by its digest) for one customer's install of one shop."""
        ...

    async def take_state(self, digest: str, now: datetime) -> tuple[str, str] | None:
        """(account_id, shop) of an unexpired state, deleted in the same step: a state works once."""
        ...

    async def save_shop(self, shop: Shop, now: datetime) -> None:
        """Insert or replace the shop (a reinstall links it again and bumps token_version)."""
        ...

    async def get_shop(self, shop: str) -> Shop | None: ...

    async def list_shops(self, account_id: str) -> list[Shop]: ...

    async def claim_refresh(
        self, shop: str, token_version: int, now: datetime, lease_until: datetime
    ) -> bool:
        """Take the shop's refresh lease if its tokens are still at `token_version` and nobody
        else holds an unexpired lease; True for exactly one concurrent caller."""
        ...

    async def store_tokens(self, shop: str, token_version: int, tokens: TokenPair) -> bool:
        """Compare-and-swap: store the refreshed pair only if still at `token_version`
        (then bump it and release the lease); False if another pair was stored meanwhile."""
        ...

    async def release_refresh(self, shop: str) -> None: ...

    async def shops_to_renew(self, before: datetime) -> list[str]:
        """Installed shops whose refresh token expires before `before`."""
        ...

    async def uninstall(self, shop: str, now: datetime) -> bool:
        """Drop the shop's tokens (app/uninstalled); the link stays for shop/redact."""
        ...

    async def delete_shop(self, shop: str) -> None:
        """Forget the shop entirely: its row, webhooks, recipients and exports (shop/redact)."""
        ...

    async def add_webhook(
        self,
        *,
        webhook_id: str,
        shop: str,
        topic: str,
        api_version: str | None,
        triggered_at: datetime | None,
        body: bytes,
        now: datetime,
    ) -> bool:
        """Store a received webhook; False (and nothing stored) if its webhook id is known."""
        ...

    async def claim_webhooks(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[ReceivedWebhook]:
        """Lease due PENDING webhooks, oldest first; a lapsed lease is claimable again."""
        ...

    async def finish_webhook(self, id: int, status: str, now: datetime, error: str | None) -> None:
        """DONE or FAILED: the body (customer data) is emptied, the row kept for dedupe."""
        ...

    async def retry_webhook(self, id: int, next_attempt_at: datetime, error: str) -> None: ...

    async def webhook_status(self, webhook_id: str) -> str | None: ...

    async def remember_recipients(
        self, shop: str, customer_id: str | None, destinations: Sequence[str], now: datetime
    ) -> None: ...

    async def recipients(self, shop: str, customer_id: str | None = None) -> list[str]:
        """The shop's known destinations (all of them, or one customer's)."""
        ...

    async def forget_recipients(self, shop: str, destinations: Sequence[str]) -> None: ...

    async def add_export(self, export: DataExport) -> None: ...

    async def list_exports(self, account_id: str) -> list[DataExport]: ...

    async def delete_exports(self, shop: str, customer_id: str) -> int:
        """Drop the customer's earlier data-request answers (they hold what redact erases)."""
        ...
