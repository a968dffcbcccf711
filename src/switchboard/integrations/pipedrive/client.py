"""Pipedrive over HTTP: the OAuth token endpoint and the few API calls the app makes.

Errors: `PipedriveUnauthorizedError` (401: the access token is expired or revoked; refresh and
retry once), `PipedriveGrantError` (the token endpoint refused the code or refresh token: the
company must reinstall), `PipedriveDomainError` (an `api_domain` that is not Pipedrive's: the
access token is never sent there), `PipedriveUnavailableError` (anything else: network, 5xx,
429 past the retry budget).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from switchboard.config import PipedriveSettings

_IDS_PER_PAGE: Final = 100  # v2's `ids` takes at most 100 ids, and `limit` is at most 500
_MAX_PAGES: Final = 1000


class PipedriveError(Exception):
    """Something Pipedrive did not do; the message is safe to show (no tokens in it)."""


class PipedriveUnauthorizedError(PipedriveError):
    pass


class PipedriveGrantError(PipedriveError):
    pass


class PipedriveUnavailableError(PipedriveError):
    pass


class PipedriveDomainError(PipedriveError):
    pass


_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_HOST = re.compile(
    r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.pipedrive\.com"
)


def check_api_domain(api_domain: str, *, allow_loopback: bool = False) -> str:
    """`api_domain` if it is https://<name>.pipedrive.com (no port, user, path or query) — the
    token response names it, and the company's access token goes there — or, with
    `allow_loopback`, an http(s) URL on a loopback address. Raises PipedriveDomainError."""
    try:
        url = urlsplit(api_domain.strip())
        port = url.port
    except ValueError:
        url, port = None, None
    if url is not None and not (url.username or url.password or url.query or url.fragment):
        host = (url.hostname or "").lower()
        plain = url.path in ("", "/")
        if url.scheme == "https" and port in (None, 443) and plain and _HOST.fullmatch(host):
            return api_domain.strip()
        if allow_loopback and url.scheme in ("http", "https") and host in _LOOPBACK_HOSTS:
            return api_domain.strip()
    raise PipedriveDomainError(
        "the api_domain Pipedrive named is not an https://….pipedrive.com URL"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenAnswer:
    access_token: str
    refresh_token: str
    expires_in_s: int
    scope: str
    api_domain: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Me:
    user_id: str
    company_id: str


class PipedriveClient:
    def __init__(self, settings: PipedriveSettings, http: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._http = http or httpx.AsyncClient(timeout=settings.timeout_s, follow_redirects=False)

    async def close(self) -> None:
        await self._http.aclose()

    # -- OAuth ---------------------------------------------------------------------------

    async def exchange_code(self, code: str, redirect_uri: str) -> TokenAnswer:
        return await self._token(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        )

    async def refresh(self, refresh_token: str) -> TokenAnswer:
        return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def _token(self, form: Mapping[str, str]) -> TokenAnswer:
        try:
            response = await self._http.post(
                f"{self._settings.oauth_base_url.rstrip('/')}/oauth/token",
                data=dict(form),
                auth=(self._settings.client_id, self._settings.client_secret),
            )
        except httpx.HTTPError as error:
            raise PipedriveUnavailableError(f"token endpoint: {type(error).__name__}") from None
        if response.status_code in (400, 401):
            raise PipedriveGrantError(f"token endpoint refused the grant ({_reason(response)})")
        if response.status_code != 200:
            raise PipedriveUnavailableError(f"token endpoint answered {response.status_code}")
        body = _json(response)
        try:
            return TokenAnswer(
                access_token=str(body["access_token"]),
                refresh_token=str(body["refresh_token"]),
                expires_in_s=int(body.get("expires_in", 3600)),
                scope=str(body.get("scope", "")),
                api_domain=str(body["api_domain"]) if body.get("api_domain") else None,
            )
        except (KeyError, TypeError, ValueError):
            raise PipedriveUnavailableError("token endpoint answered without tokens") from None

    # -- the API on the company's api_domain -----------------------------------------------

    async def me(self, api_domain: str, access_token: str) -> Me:
        body = await self._call("GET", api_domain, "/api/v1/users/me", access_token)
        data = body.get("data") or {}
        try:
            return Me(user_id=str(data["id"]), company_id=str(data["company_id"]))
        except KeyError:
            raise PipedriveUnavailableError("users/me answered without a company") from None

    async def persons(
        self, api_domain: str, access_token: str, ids: list[str]
    ) -> list[dict[str, Any]]:
        """The persons with these ids (API v2, following `next_cursor`); missing ones are absent."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), _IDS_PER_PAGE):
            chunk = ids[start : start + _IDS_PER_PAGE]
            cursor: str | None = None
            for _ in range(_MAX_PAGES):
                params = {"ids": ",".join(chunk), "limit": str(_IDS_PER_PAGE)}
                if cursor:
                    params["cursor"] = cursor
                body = await self._call(
                    "GET", api_domain, "/api/v2/persons", access_token, params=params
                )
                found.extend(p for p in body.get("data") or [] if isinstance(p, dict))
                cursor = (body.get("additional_data") or {}).get("next_cursor")
                if not cursor:
                    break
        return found

    async def add_note(
        self, api_domain: str, access_token: str, person_id: str, content: str
    ) -> None:
        await self._call(
            "POST", api_domain, "/api/v1/notes", access_token,
            json={"content": content, "person_id": int(person_id)},
        )  # fmt: skip

    async def _call(
        self,
        method: str,
        api_domain: str,
        path: str,
        access_token: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        base = check_api_domain(api_domain, allow_loopback=self._settings.allow_loopback_api)
        url = f"{base.rstrip('/')}{path}"
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        retries = 0
        while True:
            try:
                response = await self._http.request(
                    method, url, params=params, json=json, headers=headers
                )
            except httpx.HTTPError as error:
                raise PipedriveUnavailableError(f"{path}: {type(error).__name__}") from None
            if response.status_code == 429 and retries < self._settings.max_rate_limit_retries:
                # Pipedrive's burst window is 2 s; its Retry-After says when the budget is back
                wait = _retry_after(response)
                if wait <= self._settings.max_retry_after_s:
                    retries += 1
                    await asyncio.sleep(wait)
                    continue
            if response.status_code == 401:
                raise PipedriveUnauthorizedError(f"{path}: access token refused")
            if not 200 <= response.status_code < 300:
                raise PipedriveUnavailableError(
                    f"{path} answered {response.status_code} ({_reason(response)})"
                )
            return _json(response)


def _retry_after(response: httpx.Response) -> float:
    raw = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 2.0


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise PipedriveUnavailableError("Pipedrive answered with something not JSON") from None
    if not isinstance(body, dict):
        raise PipedriveUnavailableError("Pipedrive answered with something not an object")
    return body


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or f"HTTP {response.status_code}")[:200]
    return f"HTTP {response.status_code}"
