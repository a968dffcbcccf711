"""Auth tokens: HS512 JWTs whose `sub` is the customer id, checked on every API call."""

from __future__ import annotations

import secrets
from datetime import timedelta

import jwt

from switchboard.clock import Clock
from switchboard.domain.accounts import Account
from switchboard.errors import AuthenticationError
from switchboard.storage.account_cache import CachedAccountStore

_REFUSED = "authToken is missing, invalid or expired"
_VERIFIED_MAX = 10_000


class TokenService:
    def __init__(
        self,
        store: CachedAccountStore,
        clock: Clock,
        *,
        signing_key: bytes,
        ttl_s: int,
        issuer: str,
        audience: str,
        leeway_s: int = 30,
    ) -> None:
        self._store = store
        self._clock = clock
        self._key = signing_key
        self._ttl = timedelta(seconds=ttl_s)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._verified: dict[str, dict[str, object]] = {}

    def issue(self, account: Account, *, ttl_s: int | None = None) -> str:
        now = self._clock.now()
        ttl = timedelta(seconds=ttl_s) if ttl_s else self._ttl
        claims = {
            "sub": account.id,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "iss": self._issuer,
            "aud": self._audience,
            "jti": secrets.token_urlsafe(16),
            "tv": account.token_version,
        }
        return jwt.encode(claims, self._key, algorithm="HS512")

    def decode(self, token: str | None) -> dict[str, object]:
        """Signature, algorithm and standard claims; raises AuthenticationError on any fault.

        A token whose signature was verified before is not verified again (its claims are
        kept, keyed by the whole token); its times are checked on every call."""
        if not token:
            raise AuthenticationError(_REFUSED)
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= _VERIFIED_MAX:
                self._verified.clear()
            self._verified[token] = claims
        now = self._clock.now().timestamp()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise AuthenticationError(_REFUSED)
        if iat > now + self._leeway or exp <= now - self._leeway:
            raise AuthenticationError(_REFUSED)
        return claims

    def _verify(self, token: str) -> dict[str, object]:
        try:
            claims: dict[str, object] = jwt.decode(
                token.strip().removeprefix("Bearer ").strip(),
                self._key,
                algorithms=["HS512"],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                # Times are checked below against our clock, which tests can move.
                options={
                    "require": ["exp", "iat", "sub", "iss", "aud", "jti"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            raise AuthenticationError(_REFUSED) from None
        return claims

    async def authenticate(self, token: str | None) -> Account:
        """The account behind a token; refused alike when forged, expired, revoked or disabled."""
        claims = self.decode(token)
        subject = claims.get("sub")
        account = await self._store.cached_account(subject) if isinstance(subject, str) else None
        if account is None or not account.enabled or claims.get("tv") != account.token_version:
            raise AuthenticationError(_REFUSED)
        return account
