"""The operator's OpenID Connect side: discovery (cached), the authorize URL, and the code
exchange with a `private_key_jwt` client assertion (RFC 7523, CAMARA security profile)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from switchboard.silentauth.operators import Operator

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 120  # CAMARA allows up to 300 s; short limits a leaked assertion's use
SCOPE = "number-verification:verify"


class OperatorError(Exception):
    """The operator could not be used: unreachable, an error answer, or a malformed one. The
    message names what failed and is safe to record (no codes, tokens or assertions)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str


def new_code_verifier() -> str:
    return secrets.token_urlsafe(48)  # 64 characters, within RFC 7636's 43-128


def code_challenge(code_verifier: str) -> str:
    digest = hashlib.sha256(code_verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        detail = ""
        try:
            body = response.json()
            detail = f" ({body.get('error') or body.get('code')})" if isinstance(body, dict) else ""
        except ValueError:
            pass
        raise OperatorError(f"{what} answered HTTP {response.status_code}{detail}")
    try:
        body = response.json()
    except ValueError:
        raise OperatorError(f"{what} answered something other than JSON") from None
    if not isinstance(body, dict):
        raise OperatorError(f"{what} answered JSON that is not an object")
    return body


class OidcClient:
    """Talks to the operators' authorization servers; one discovery document per operator is
    kept for `cache_s` (re-fetched after a failure)."""

    def __init__(self, *, timeout_s: float, cache_s: float) -> None:
        self._timeout = httpx.Timeout(timeout_s)
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, Discovery]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _http(self) -> httpx.AsyncClient:
        # A client per call: these calls are a few per verification, and nothing to close at
        # shutdown. Redirects are not followed: an authorization server never needs one here.
        return httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)

    async def discover(self, operator: Operator) -> Discovery:
        cached = self._cache.get(operator.name)
        if cached is not None and time.monotonic() - cached[0] < self._cache_s:
            return cached[1]
        lock = self._locks.setdefault(operator.name, asyncio.Lock())
        async with lock:  # one fetch for the sends that find the cache cold together
            cached = self._cache.get(operator.name)
            if cached is not None and time.monotonic() - cached[0] < self._cache_s:
                return cached[1]
            try:
                async with self._http() as http:
                    response = await http.get(operator.discovery_url)
            except httpx.HTTPError as exc:
                raise OperatorError(f"discovery unreachable ({type(exc).__name__})") from None
            body = _json(response, "discovery")
            try:
                discovery = Discovery(
                    issuer=str(body["issuer"]),
                    authorization_endpoint=str(body["authorization_endpoint"]),
                    token_endpoint=str(body["token_endpoint"]),
                )
            except KeyError as exc:
                raise OperatorError(f"discovery document lacks {exc.args[0]}") from None
            self._cache[operator.name] = (time.monotonic(), discovery)
            return discovery

    @staticmethod
    def authorize_url(
        operator: Operator,
        discovery: Discovery,
        *,
        redirect_uri: str,
        state: str,
        code_verifier: str,
    ) -> str:
        """The URL the device opens over mobile data; `prompt=none`: the network identifies the
        subscriber, there is no login page to show. PKCE S256 binds the code to this session."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": operator.client_id,
                "redirect_uri": redirect_uri,
                "scope": f"openid {operator.purpose} {SCOPE}",
                "state": state,
                "prompt": "none",
                "code_challenge": code_challenge(code_verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in discovery.authorization_endpoint else "?"
        return f"{discovery.authorization_endpoint}{separator}{query}"

    @staticmethod
    def client_assertion(operator: Operator, audience: str, now: datetime) -> str:
        issued = int(now.timestamp())
        claims = {
            "iss": operator.client_id,
            "sub": operator.client_id,
            "aud": audience,
            "jti": secrets.token_urlsafe(24),
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME_S,
        }
        headers = {"kid": operator.key_id} if operator.key_id else None
        return jwt.encode(claims, operator.key, algorithm=operator.algorithm, headers=headers)

    async def exchange_code(
        self,
        operator: Operator,
        code: str,
        *,
        redirect_uri: str,
        code_verifier: str,
        now: datetime,
    ) -> str:
        """The access token for `code`; CAMARA's are single-use, so one per check."""
        discovery = await self.discover(operator)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
            "client_id": operator.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(operator, discovery.token_endpoint, now),
        }
        try:
            async with self._http() as http:
                response = await http.post(
                    discovery.token_endpoint, data=form, headers={"Accept": "application/json"}
                )
        except httpx.HTTPError as exc:
            raise OperatorError(f"token endpoint unreachable ({type(exc).__name__})") from None
        body = _json(response, "token endpoint")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise OperatorError("token endpoint answered without an access_token")
        if str(body.get("token_type", "")).lower() != "bearer":
            raise OperatorError("token endpoint answered a token that is not a Bearer token")
        return token
