"""The store contract of idempotency keys (api/idempotency.py); storage/sql/idempotency.py implements it."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from switchboard.domain.idempotency import IdempotencyRecord


class IdempotencyStore(Protocol):
    async def claim(self, record: IdempotencyRecord, now: datetime) -> IdempotencyRecord | None:
        """Take the key for `record` (state IN_PROGRESS): None when this claim now holds it —
        the key was new, or `is_free(now)` held for the row found — else the row that holds it.
        Atomic: of concurrent claims of one key exactly one gets None."""
        ...

    async def get(self, account_id: str, route: str, key: str) -> IdempotencyRecord | None: ...

    async def renew(
        self, account_id: str, route: str, key: str, owner: str, lease_until: datetime
    ) -> bool:
        """Extend the lease of an IN_PROGRESS key still held by `owner`; False when it is not."""
        ...

    async def complete(
        self,
        account_id: str,
        route: str,
        key: str,
        owner: str,
        *,
        status_code: int,
        content_type: str | None,
        body: bytes,
    ) -> None:
        """Store the answer of the request that holds the key (nothing if `owner` lost it)."""
        ...

    async def release(self, account_id: str, route: str, key: str, owner: str) -> None:
        """Forget a key `owner` holds (its answer is not to be replayed: a retry runs again)."""
        ...

    async def purge_expired(self, now: datetime) -> int:
        """Delete keys past `expires_at`; how many."""
        ...
