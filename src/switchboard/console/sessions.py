"""Console logins: cookie sessions bound to the account's token version, operators, CSRF tokens.

The cookie holds 256 random bits; the database keeps only their HMAC under the server pepper,
so a leaked table opens no session. A session is good while it is unexpired, unrevoked, and
its subject is enabled with the token version it had at login: a password change (which bumps
the version, as it does for API tokens) ends every session at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from switchboard.clock import Clock
from switchboard.console.store import ConsoleSession, ConsoleStore, Operator, SessionKind
from switchboard.domain.accounts import Account
from switchboard.errors import (
    AccountLockedError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
)
from switchboard.services.accounts import AccountService
from switchboard.vault import SealedValueError, Vault

BAD_LOGIN = "e-mail or password is invalid"
_OPERATOR_MAX_FAILURES = 10
_OPERATOR_WINDOW = timedelta(minutes=15)
_PURGE_ONE_IN = 50  # logins; expired sessions are deleted a day after they end


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request's session belongs to: a customer (account) or an operator."""

    session: ConsoleSession
    csrf_token: str
    account: Account | None = None
    operator: Operator | None = None


class OperatorService:
    """Operator accounts (created by the CLI) and their password check."""

    def __init__(self, store: ConsoleStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
        self._dummy_hash = self._hasher.hash("dummy password for unknown operators")
        self._slots = asyncio.Semaphore(2)
        # e-mail → (failures in the window, window start, locked until); per process: operators
        # are few and the table has no lockout columns (ADR 0015)
        self._failures: dict[str, tuple[int, datetime, datetime | None]] = {}

    async def create(self, email: str, password: str) -> Operator:
        email = email.strip()
        if "@" not in email or len(email) > 320:
            raise InvalidRequestError(f"'{email}' is not an e-mail address")
        if len(password) < 12:
            raise InvalidRequestError("an operator password has at least 12 characters")
        operator = Operator(
            id=secrets.token_hex(8),
            email=email,
            password_hash=await asyncio.to_thread(self._hasher.hash, password),
            token_version=1,
            enabled=True,
            created_at=self._clock.now(),
        )
        await self._store.add_operator(operator)
        return operator

    async def list(self) -> list[Operator]:
        return await self._store.list_operators()

    async def check_login(self, email: str, password: str) -> Operator:
        """The operator; AuthenticationError, or AccountLockedError after 10 failures in 15
        minutes for that e-mail (locked 15 minutes, as the customers' default)."""
        key = email.strip().lower()
        now = self._clock.now()
        count, since, locked_until = self._failures.get(key, (0, now, None))
        if locked_until is not None and now < locked_until:
            retry = int((locked_until - now).total_seconds()) + 1
            raise AccountLockedError(
                "too many failed attempts; try again later", retry_after_s=retry
            )
        operator = await self._store.find_operator(email) if key else None
        # an unknown e-mail costs the same verify, so timing does not tell it apart
        valid = await self._verify(
            operator.password_hash if operator else self._dummy_hash, password
        )
        if operator is None or not valid or not operator.enabled:
            if now - since > _OPERATOR_WINDOW:
                count, since = 0, now
            count += 1
            lock = now + _OPERATOR_WINDOW if count >= _OPERATOR_MAX_FAILURES else None
            if len(self._failures) > 10_000:
                self._failures.clear()
            self._failures[key] = (0, now, lock) if lock else (count, since, None)
            raise AuthenticationError(BAD_LOGIN)
        self._failures.pop(key, None)
        return operator

    async def _verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash, password)
            except (VerificationError, InvalidHashError):
                return False


class SessionManager:
    def __init__(
        self,
        store: ConsoleStore,
        accounts: AccountService,
        operators: OperatorService,
        clock: Clock,
        *,
        key: bytes,
        ttl: timedelta,
        vault: Vault,
    ) -> None:
        self._store = store
        self._vault = vault
        self._accounts = accounts
        self._operators = operators
        self._clock = clock
        self._key = hashlib.sha256(b"switchboard console sessions\x00" + key).digest()
        self._ttl = ttl

    def _digest(self, value: str) -> str:
        return hmac.new(self._key, b"session\x00" + value.encode(), hashlib.sha256).hexdigest()

    def csrf_token(self, digest: str) -> str:
        """The form token of a session: an HMAC of its digest, so it needs no storage."""
        return hmac.new(self._key, b"csrf\x00" + digest.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, principal: Principal, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(principal.csrf_token, token or "")

    async def login_customer(self, email: str, password: str) -> str:
        """A new session's cookie value; AuthenticationError / AccountLockedError as the token
        API raises them (the same lockout counts console and API failures together)."""
        account = await self._accounts.check_login(email, password)
        return await self._open(SessionKind.CUSTOMER, account.id, account.token_version)

    async def login_operator(self, email: str, password: str) -> str:
        operator = await self._operators.check_login(email, password)
        return await self._open(SessionKind.OPERATOR, operator.id, operator.token_version)

    async def _open(self, kind: SessionKind, subject_id: str, token_version: int) -> str:
        value = secrets.token_urlsafe(32)
        now = self._clock.now()
        if secrets.randbelow(_PURGE_ONE_IN) == 0:  # now and then, not on every login
            await self._store.purge_sessions(now - timedelta(days=1))
        await self._store.add_session(
            ConsoleSession(
                digest=self._digest(value), kind=kind, subject_id=subject_id,
                token_version=token_version, created_at=now, expires_at=now + self._ttl,
            )
        )  # fmt: skip
        return value

    async def resolve(self, value: str | None) -> Principal | None:
        """The principal of a cookie value, None when it opens no live session."""
        if not value or len(value) > 128:
            return None
        digest = self._digest(value)
        session = await self._store.get_session(digest)
        now = self._clock.now()
        if session is None or session.revoked_at is not None or session.expires_at <= now:
            return None
        csrf = self.csrf_token(digest)
        if session.kind is SessionKind.CUSTOMER:
            try:
                account = await self._accounts.get(session.subject_id)
            except NotFoundError:  # the account is gone
                return None
            if not account.enabled or account.token_version != session.token_version:
                return None
            return Principal(session, csrf, account=account)
        operator = await self._store.get_operator(session.subject_id)
        if operator is None or not operator.enabled:
            return None
        if operator.token_version != session.token_version:
            return None
        return Principal(session, csrf, operator=operator)

    async def set_flash(self, principal: Principal, values: Mapping[str, str]) -> None:
        """Leave one-time values (a new secret, a notice) for the next page this session
        opens: sealed, so a secret never sits readable in the database or in a URL."""
        digest = principal.session.digest
        sealed = self._vault.seal(json.dumps(dict(values)), _flash_context(digest))
        await self._store.set_flash(digest, sealed)

    async def take_flash(self, principal: Principal) -> dict[str, str]:
        """The values `set_flash` left, once; {} when none (no query unless one was left)."""
        if principal.session.flash is None:
            return {}
        digest = principal.session.digest
        sealed = await self._store.take_flash(digest)
        if sealed is None:
            return {}
        try:
            values = json.loads(self._vault.open(sealed, _flash_context(digest)))
        except SealedValueError:
            return {}
        return {str(k): str(v) for k, v in values.items()}

    async def logout(self, principal: Principal) -> None:
        await self._store.revoke_session(principal.session.digest, self._clock.now())


def _flash_context(digest: str) -> str:
    return f"console:session:{digest}:flash"
