"""Shopify's side of the wire: the OAuth token endpoint (code grant, refresh) and GraphQL Admin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from switchboard.config import ShopifySettings


class ShopifyApiError(Exception):
    """Shopify refused or could not be reached; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenGrant:
    """What /admin/oauth/access_token answers for an expiring offline token."""

    access_token: str
    expires_in_s: int
    refresh_token: str
    refresh_token_expires_in_s: int
    scope: str


def _grant(body: Any) -> TokenGrant:
    try:
        return TokenGrant(
            access_token=str(body["access_token"]),
            expires_in_s=int(body["expires_in"]),
            refresh_token=str(body["refresh_token"]),
            refresh_token_expires_in_s=int(body["refresh_token_expires_in"]),
            scope=str(body.get("scope", "")),
        )
    except (KeyError, TypeError, ValueError):
        # a non-expiring token (no expires_in / refresh_token) is refused too: Shopify stops
        # accepting them from public apps on 2027-01-01
        raise ShopifyApiError("the token response is not an expiring offline token") from None


class ShopifyAdmin:
    def __init__(self, settings: ShopifySettings, *, timeout_s: float = 10.0) -> None:
        self._settings = settings
        self._http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    def base_url(self, shop: str) -> str:
        return self._settings.admin_base_url.replace("{shop}", shop)

    async def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        try:
            response = await self._http.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ShopifyApiError(f"Shopify unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ShopifyApiError(
                f"Shopify answered HTTP {response.status_code}", response.status_code
            )
        try:
            return response.json()
        except ValueError:
            raise ShopifyApiError("Shopify answered with a body that is not JSON") from None

    async def _token(self, shop: str, body: dict[str, Any]) -> TokenGrant:
        body = {
            "client_id": self._settings.api_key,
            "client_secret": self._settings.api_secret,
            **body,
        }
        return _grant(await self._post(f"{self.base_url(shop)}/admin/oauth/access_token", body, {}))

    async def exchange_code(self, shop: str, code: str) -> TokenGrant:
        """The authorization code for an expiring offline token (`expiring=1`)."""
        return await self._token(shop, {"code": code, "expiring": "1"})

    async def refresh(self, shop: str, refresh_token: str) -> TokenGrant:
        """A new pair; the refresh token rotates with every use."""
        return await self._token(
            shop, {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def graphql(
        self, shop: str, access_token: str, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """`data` of a GraphQL Admin call; top-level `errors` raise."""
        url = f"{self.base_url(shop)}/admin/api/{self._settings.api_version}/graphql.json"
        body = await self._post(
            url,
            {"query": query, "variables": variables or {}},
            {"X-Shopify-Access-Token": access_token},
        )
        if (
            not isinstance(body, dict)
            or body.get("errors")
            or not isinstance(body.get("data"), dict)
        ):
            raise ShopifyApiError("the GraphQL Admin API answered with errors")
        data: dict[str, Any] = body["data"]
        return data

    async def close(self) -> None:
        await self._http.aclose()
