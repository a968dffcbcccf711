"""Accounts as the token check sees them: read from the store at most once per `ttl_s`.

Every authenticated request needs its account (enabled? token version?). Reading it is a
database transaction per request; a short-lived copy removes it. Changes made through this
store (this process) are seen at once; changes made by another process (the CLI, a second
API process) within `ttl_s`: a revoked token or a disabled account is refused at most `ttl_s`
later. `ttl_s = 0` reads every time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from switchboard.domain.accounts import Account, FailureState
from switchboard.storage.base import AccountStore

_MAX_ENTRIES = 10_000


class CachedAccountStore:
    def __init__(
        self,
        store: AccountStore,
        *,
        ttl_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl_s
        self._monotonic = monotonic
        self._entries: dict[str, tuple[float, Account]] = {}

    async def cached_account(self, account_id: str) -> Account | None:
        """The account, as read at most `ttl_s` ago (unknown ids are always read)."""
        entry = self._entries.get(account_id)
        if entry is not None and self._monotonic() < entry[0]:
            return entry[1]
        return await self.get_account(account_id)

    def forget(self, account_id: str) -> None:
        self._entries.pop(account_id, None)

    def _keep(self, account: Account | None) -> Account | None:
        if account is not None and self._ttl > 0:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[account.id] = (self._monotonic() + self._ttl, account)
        return account

    async def create_account(self, account: Account) -> None:
        await self._store.create_account(account)

    async def get_account(self, account_id: str) -> Account | None:
        account = await self._store.get_account(account_id)
        if account is None:
            self.forget(account_id)
        return self._keep(account)

    async def find_account_by_email(self, email: str) -> Account | None:
        return self._keep(await self._store.find_account_by_email(email))

    async def list_accounts(self) -> list[Account]:
        return await self._store.list_accounts()

    async def update_account(
        self, account_id: str, now: datetime, **changes: Any
    ) -> Account | None:
        self.forget(account_id)
        try:
            return self._keep(await self._store.update_account(account_id, now, **changes))
        finally:
            if self._ttl <= 0:
                self.forget(account_id)

    async def record_login_failure(self, account_id: str, state: FailureState) -> None:
        self.forget(account_id)
        await self._store.record_login_failure(account_id, state)

    async def reset_login_failures(self, account_id: str) -> None:
        self.forget(account_id)
        await self._store.reset_login_failures(account_id)
