"""Integration keys and the credentials third parties (CRMs) present: a key, or the spec's password."""

from __future__ import annotations

from datetime import timedelta

from switchboard.clock import Clock
from switchboard.domain import integration_keys as domain
from switchboard.domain.accounts import Account
from switchboard.errors import AuthenticationError, InvalidRequestError, NotFoundError
from switchboard.services.accounts import BAD_CREDENTIALS, AccountService
from switchboard.storage.base import AccountStore, IntegrationKeyStore

_MAX_ACTIVE_KEYS = 20
# A key's use is recorded at most this often: a CRM sending thousands of messages a minute
# should not turn every request into a write.
_TOUCH_EVERY = timedelta(minutes=1)


class IntegrationKeyService:
    def __init__(
        self,
        store: IntegrationKeyStore,
        accounts: AccountStore,
        clock: Clock,
        *,
        pepper: bytes,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._clock = clock
        self._pepper = pepper

    async def create(self, account_id: str, name: str) -> tuple[domain.IntegrationKey, str]:
        """A new key for the account; the plain key is returned once and never stored."""
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidRequestError("name the key (1-100 characters), e.g. 'CleverTap'")
        if await self._accounts.get_account(account_id) is None:
            raise NotFoundError(f"no customer {account_id}")
        active = [k for k in await self._store.list_keys(account_id) if k.active]
        if len(active) >= _MAX_ACTIVE_KEYS:
            raise InvalidRequestError(
                f"this customer already has {_MAX_ACTIVE_KEYS} active keys; revoke one first"
            )
        plain = domain.new_key()
        key = domain.IntegrationKey(
            id=domain.new_key_id(),
            account_id=account_id,
            name=name,
            hint=domain.key_hint(plain),
            created_at=self._clock.now(),
        )
        await self._store.add_key(key, domain.key_digest(self._pepper, plain))
        return key, plain

    async def list(self, account_id: str) -> list[domain.IntegrationKey]:
        return await self._store.list_keys(account_id)

    async def revoke(self, account_id: str, key_id: str) -> domain.IntegrationKey:
        key = await self._store.revoke_key(account_id, key_id, self._clock.now())
        if key is None:
            raise NotFoundError(f"no integration key {key_id}")
        return key

    async def authenticate(self, plain: str | None, customer_id: str | None = None) -> Account:
        """The enabled account behind an active key (and, if given, with that customer id).

        Every failure raises the same AuthenticationError (501)."""
        if not domain.looks_like_key(plain):
            raise AuthenticationError(BAD_CREDENTIALS)
        assert plain is not None
        key = await self._store.find_by_digest(domain.key_digest(self._pepper, plain.strip()))
        if key is None or not key.active:
            raise AuthenticationError(BAD_CREDENTIALS)
        if customer_id and customer_id.strip() != key.account_id:
            raise AuthenticationError(BAD_CREDENTIALS)
        account = await self._accounts.get_account(key.account_id)
        if account is None or not account.enabled:
            raise AuthenticationError(BAD_CREDENTIALS)
        now = self._clock.now()
        if key.last_used_at is None or now - key.last_used_at >= _TOUCH_EVERY:
            await self._store.touch_key(key.id, now)
        return account


class PartnerCredentials:
    """What a third party sends on the customer's behalf: `customerId` + `email` + `password`
    (the spec's CRM headers), where the password may be an integration key, or a key alone
    (`Authorization: Bearer sbk_…`). Passwords go through the token API's check and lockout."""

    def __init__(self, accounts: AccountService, keys: IntegrationKeyService) -> None:
        self._accounts = accounts
        self._keys = keys

    async def authenticate(
        self,
        *,
        customer_id: str | None,
        email: str | None,
        secret: str | None,
    ) -> Account:
        if domain.looks_like_key(secret):
            account = await self._keys.authenticate(secret, customer_id)
            if email and email.strip().lower() != account.email.lower():
                raise AuthenticationError(BAD_CREDENTIALS)
            return account
        return await self._accounts.check_password(customer_id, secret, email)

    async def authenticate_bearer(self, authorization: str | None) -> Account:
        """`Authorization: Bearer sbk_…` → the key's account."""
        scheme, _, value = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            raise AuthenticationError(BAD_CREDENTIALS)
        return await self._keys.authenticate(value.strip())
