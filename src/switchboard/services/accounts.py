"""Customer accounts: creation, updates, and checking the token API's key."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from switchboard.clock import Clock
from switchboard.domain import accounts as domain
from switchboard.errors import (
    AccountLockedError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
)
from switchboard.storage.base import AccountStore

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$")
# The same answer for every failure, so a caller never learns which part was wrong.
BAD_CREDENTIALS = "customerId, key or email is invalid"


class AccountService:
    def __init__(
        self,
        store: AccountStore,
        clock: Clock,
        policy: domain.LockoutPolicy,
        *,
        max_concurrent_hashes: int = 4,
    ) -> None:
        self._store = store
        self._clock = clock
        self._policy = policy
        # argon2id with OWASP's minimum profile: 19 MiB, 2 passes (research API-4).
        self._hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
        self._hash_slots = asyncio.Semaphore(max_concurrent_hashes)
        self._dummy_hash = self._hasher.hash("dummy password for unknown customers")

    async def _hash(self, password: str) -> str:
        async with self._hash_slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        async with self._hash_slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

    async def create_customer(
        self, *, email: str, password: str, customer_id: str | None = None, name: str = ""
    ) -> domain.Account:
        if not _EMAIL.match(email):
            raise InvalidRequestError(f"'{email}' is not an e-mail address")
        if len(password) < 8:
            raise InvalidRequestError("the password must have at least 8 characters")
        if customer_id is not None and not _CUSTOMER_ID.match(customer_id):
            raise InvalidRequestError("customer ids use letters, digits, '-', '_' and '.'")
        now = self._clock.now()
        account = domain.Account(
            id=customer_id or domain.new_customer_id(),
            email=email,
            name=name,
            password_hash=await self._hash(password),
            enabled=True,
            token_version=1,
            failed_logins=0,
            consecutive_failures=0,
            first_failure_at=None,
            locked_until=None,
            settings={},
            created_at=now,
            updated_at=now,
        )
        await self._store.create_account(account)
        return account

    async def get(self, customer_id: str) -> domain.Account:
        account = await self._store.get_account(customer_id)
        if account is None:
            raise NotFoundError(f"no customer {customer_id}")
        return account

    async def list(self) -> list[domain.Account]:
        return await self._store.list_accounts()

    async def update(
        self,
        customer_id: str,
        *,
        password: str | None = None,
        enabled: bool | None = None,
        unlock: bool = False,
        settings: dict[str, Any] | None = None,
    ) -> domain.Account:
        """Change credentials, access and settings; the callback is CallbackService's."""
        account = await self.get(customer_id)
        changes: dict[str, Any] = {}
        if password is not None:
            if len(password) < 8:
                raise InvalidRequestError("the password must have at least 8 characters")
            changes["password_hash"] = await self._hash(password)
            # A new password revokes every token issued before it.
            changes["token_version"] = account.token_version + 1
        if enabled is not None:
            changes["enabled"] = enabled
        if unlock:
            changes.update(
                failed_logins=0, consecutive_failures=0, first_failure_at=None, locked_until=None
            )
        if settings is not None:
            changes["settings"] = {**account.settings, **settings}
        if not changes:
            return account
        updated = await self._store.update_account(customer_id, self._clock.now(), **changes)
        assert updated is not None
        return updated

    async def revoke_tokens(self, customer_id: str) -> domain.Account:
        account = await self.get(customer_id)
        updated = await self._store.update_account(
            customer_id, self._clock.now(), token_version=account.token_version + 1
        )
        assert updated is not None
        return updated

    async def check_key(
        self, customer_id: str | None, key: str | None, email: str | None = None
    ) -> domain.Account:
        """The token API's check: customer id, base64 password, optional e-mail.

        Every failure raises the same AuthenticationError (501) and costs one argon2 verify, known
        customer or not, so timing tells nothing either. Repeated failures lock the customer.
        """
        return await self.check_password(customer_id, _decode_key(key), email)

    async def check_login(self, email: str, password: str) -> domain.Account:
        """The console's login: e-mail and password, checked as `check_password` does (the
        same lockout, one argon2 verify for unknown e-mails too)."""
        account = await self._store.find_account_by_email(email) if email.strip() else None
        return await self.check_password(account.id if account else None, password, email)

    async def check_password(
        self, customer_id: str | None, password: str | None, email: str | None = None
    ) -> domain.Account:
        """The customer's id, password and optional e-mail, checked as `check_key` does (the
        same single answer for every failure, one argon2 verify each, the lockout)."""
        account = await self._store.get_account(customer_id) if customer_id else None
        now = self._clock.now()
        if account is None:
            await self._verify(self._dummy_hash, password or "x")
            raise AuthenticationError(BAD_CREDENTIALS)
        if account.is_locked(now):
            assert account.locked_until is not None
            retry_after = int((account.locked_until - now) / timedelta(seconds=1)) + 1
            raise AccountLockedError(
                "too many failed attempts; this customer is locked for now",
                retry_after_s=retry_after,
            )
        valid = password is not None and await self._verify(account.password_hash, password)
        if email and email.strip().lower() != account.email.lower():
            valid = False
        if not valid:
            state = domain.record_failure(account, now, self._policy)
            await self._store.record_login_failure(account.id, state)
            raise AuthenticationError(BAD_CREDENTIALS)
        if not account.enabled:
            raise AuthenticationError(BAD_CREDENTIALS)
        if account.failed_logins or account.consecutive_failures:
            await self._store.reset_login_failures(account.id)
        if self._hasher.check_needs_rehash(account.password_hash):
            await self._store.update_account(
                account.id, now, password_hash=await self._hash(password or "")
            )
        return account


def _decode_key(key: str | None) -> str | None:
    """The spec's `key` is the password in base64; None when it is not valid base64 text."""
    if not key:
        return None
    padded = key.strip() + "=" * (-len(key.strip()) % 4)
    try:
        raw = base64.b64decode(
            padded, altchars=b"-_" if ("-" in key or "_" in key) else None, validate=True
        )
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
