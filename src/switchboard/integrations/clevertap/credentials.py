"""CleverTap's credential headers, with a short-lived memory of passwords already verified.

CleverTap sends one request per message unless batching is configured, each with the
customer's password: one argon2 verify per message held a burst to what the bounded hashing
allows (measured in ADR 0011). A verified (customerId, email, password) is remembered for
`ttl_s` under an HMAC with a per-process random key, never the password itself; concurrent
requests with the same credentials share one verify. A hit still re-reads the account: a
changed password, a disabled or locked account ends it at once. Failures are never kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from datetime import datetime, timedelta

from switchboard.clock import Clock
from switchboard.domain.accounts import Account
from switchboard.domain.integration_keys import looks_like_key
from switchboard.errors import AuthenticationError, NotFoundError
from switchboard.services.accounts import BAD_CREDENTIALS, AccountService
from switchboard.services.integration_keys import PartnerCredentials


class CleverTapCredentials:
    def __init__(
        self,
        partners: PartnerCredentials,
        accounts: AccountService,
        clock: Clock,
        *,
        ttl_s: float,
        max_entries: int = 10_000,
    ) -> None:
        self._partners = partners
        self._accounts = accounts
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_s)
        self._max_entries = max_entries
        self._key = secrets.token_bytes(32)
        # digest → (account id, the password hash it was verified against, valid until)
        self._verified: OrderedDict[bytes, tuple[str, str, datetime]] = OrderedDict()
        self._in_flight: dict[bytes, asyncio.Task[Account]] = {}

    async def authenticate(
        self,
        *,
        customer_id: str | None,
        email: str | None,
        password: str | None,
        authorization: str | None,
    ) -> Account:
        """The spec's headers (the password may be an integration key), or `Authorization:
        Bearer sbk_…` when no password is given; AuthenticationError (501) for every failure."""
        if authorization and not password:
            return await self._partners.authenticate_bearer(authorization)
        if self._ttl <= timedelta(0) or not password or looks_like_key(password):
            return await self._partners.authenticate(
                customer_id=customer_id, email=email, secret=password
            )
        digest = hmac.digest(
            self._key, json.dumps([customer_id, email, password]).encode(), hashlib.sha256
        )
        account = await self._remembered(digest, customer_id)
        if account is not None:
            return account
        task = self._in_flight.get(digest)
        if task is None:
            task = asyncio.ensure_future(
                self._partners.authenticate(customer_id=customer_id, email=email, secret=password)
            )
            self._in_flight[digest] = task
            task.add_done_callback(lambda _: self._in_flight.pop(digest, None))
        account = await asyncio.shield(task)
        self._verified[digest] = (account.id, account.password_hash, self._clock.now() + self._ttl)
        self._verified.move_to_end(digest)
        while len(self._verified) > self._max_entries:
            self._verified.popitem(last=False)
        return account

    async def _remembered(self, digest: bytes, customer_id: str | None) -> Account | None:
        entry = self._verified.get(digest)
        if entry is None:
            return None
        account_id, password_hash, until = entry
        now = self._clock.now()
        if now >= until or account_id != customer_id:
            del self._verified[digest]
            return None
        try:
            account = await self._accounts.get(account_id)
        except NotFoundError:
            del self._verified[digest]
            raise AuthenticationError(BAD_CREDENTIALS) from None
        if (
            not hmac.compare_digest(account.password_hash, password_hash)
            or not account.enabled
            or account.is_locked(now)
        ):
            del self._verified[digest]
            return None  # verified again from scratch: the lockout answers as it would
        return account
