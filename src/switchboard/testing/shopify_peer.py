"""A fake Shopify on loopback: OAuth (code grant, expiring tokens, refresh rotation), GraphQL, webhooks.

Every shop lives under `/<shop>` (point `admin_base_url` at `<url>/{shop}`). It checks what
Shopify checks: the client id and secret, a code used once, the refresh token (the current one,
or the previous one until the current one is used), the access token's expiry on GraphQL calls.
Its OAuth callbacks carry a real `hmac` over the query and its webhooks a real
`X-Shopify-Hmac-Sha256` over the exact bytes it posts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from switchboard.clock import Clock, SystemClock
from switchboard.testing.loopback import LoopbackServer

ACCESS_TTL = timedelta(hours=1)
REFRESH_TTL = timedelta(days=90)


@dataclass
class PeerShop:
    domain: str
    name: str
    timezone: str
    codes: dict[str, bool] = field(default_factory=dict)  # code → used
    access_tokens: dict[str, datetime] = field(default_factory=dict)  # token → expiry
    refresh_token: str | None = None
    previous_refresh_token: str | None = None
    subscriptions: list[dict[str, Any]] = field(default_factory=list)


def query_signature(secret: str, params: Mapping[str, str]) -> str:
    message = "&".join(
        sorted(
            f"{k.replace('%', '%25').replace('=', '%3D')}={v.replace('%', '%25')}".replace(
                "&", "%26"
            )
            for k, v in params.items()
            if k != "hmac"
        )
    )
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


class ShopifyPeer:
    def __init__(self, api_key: str, api_secret: str, *, clock: Clock | None = None) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.clock = clock or SystemClock()
        self.shops: dict[str, PeerShop] = {}
        self.refreshes = 0  # refresh grants answered
        self.token_requests: list[dict[str, Any]] = []
        self.refresh_delay_s = 0.0
        routes = [
            Route("/{shop}/admin/oauth/authorize", self._authorize, methods=["GET"]),
            Route("/{shop}/admin/oauth/access_token", self._access_token, methods=["POST"]),
            Route("/{shop}/admin/api/{version}/graphql.json", self._graphql, methods=["POST"]),
        ]
        self._server = LoopbackServer(Starlette(routes=routes))

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def admin_base_url(self) -> str:
        return f"{self._server.url}/{{shop}}"

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    def add_shop(self, domain: str, *, name: str = "Acme", timezone: str = "UTC") -> PeerShop:
        self.shops[domain] = PeerShop(domain, name, timezone)
        return self.shops[domain]

    # -- OAuth ------------------------------------------------------------------------------

    def callback_query(self, shop: str, state: str, code: str | None = None) -> dict[str, str]:
        """The query Shopify redirects the merchant back with, signed."""
        code = code or secrets.token_hex(16)
        self.shops[shop].codes[code] = False
        params = {
            "code": code,
            "host": base64.urlsafe_b64encode(f"{shop}/admin".encode()).decode().rstrip("="),
            "shop": shop,
            "state": state,
            "timestamp": str(int(self.clock.now().timestamp())),
        }
        params["hmac"] = query_signature(self.api_secret, params)
        return params

    async def _authorize(self, request: Request) -> Response:
        shop = self.shops.get(request.path_params["shop"])
        query = request.query_params
        if shop is None or query.get("client_id") != self.api_key or not query.get("state"):
            return JSONResponse({"errors": "invalid authorize request"}, status_code=400)
        # the merchant approves at once
        callback = self.callback_query(shop.domain, query["state"])
        return RedirectResponse(f"{query['redirect_uri']}?{urlencode(callback)}", status_code=302)

    def _new_pair(self, shop: PeerShop) -> dict[str, Any]:
        access = f"shpat_{secrets.token_hex(16)}"
        shop.access_tokens[access] = self.clock.now() + ACCESS_TTL
        shop.previous_refresh_token = shop.refresh_token
        shop.refresh_token = f"shprt_{secrets.token_hex(16)}"
        return {
            "access_token": access,
            "scope": "read_orders,read_customers",
            "expires_in": int(ACCESS_TTL.total_seconds()),
            "refresh_token": shop.refresh_token,
            "refresh_token_expires_in": int(REFRESH_TTL.total_seconds()),
        }

    async def _access_token(self, request: Request) -> Response:
        shop = self.shops.get(request.path_params["shop"])
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        self.token_requests.append(body)
        if (
            shop is None
            or body.get("client_id") != self.api_key
            or not hmac.compare_digest(str(body.get("client_secret", "")), self.api_secret)
        ):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if body.get("grant_type") == "refresh_token":
            given = body.get("refresh_token")
            if given is None or given not in (shop.refresh_token, shop.previous_refresh_token):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            if self.refresh_delay_s:
                await asyncio.sleep(self.refresh_delay_s)
            self.refreshes += 1
            if given == shop.refresh_token:
                shop.previous_refresh_token = None  # using the new one retires the old one
            return JSONResponse(self._new_pair(shop))
        code = body.get("code")
        if code not in shop.codes or shop.codes[code]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        shop.codes[code] = True
        if body.get("expiring") != "1":  # a legacy non-expiring offline token
            token = f"shpat_{secrets.token_hex(16)}"
            shop.access_tokens[token] = datetime.max.replace(tzinfo=UTC)
            return JSONResponse({"access_token": token, "scope": "read_orders"})
        return JSONResponse(self._new_pair(shop))

    # -- GraphQL Admin ----------------------------------------------------------------------

    async def _graphql(self, request: Request) -> Response:
        shop = self.shops.get(request.path_params["shop"])
        token = request.headers.get("x-shopify-access-token", "")
        expiry = shop.access_tokens.get(token) if shop else None
        if shop is None or expiry is None or expiry <= self.clock.now():
            return JSONResponse(
                {"errors": "[API] Invalid API key or access token"}, status_code=401
            )
        body = json.loads(await request.body())
        query = str(body.get("query", ""))
        if "webhookSubscriptionCreate" in query:
            variables = body.get("variables") or {}
            shop.subscriptions.append(variables)
            created = {
                "webhookSubscription": {
                    "id": f"gid://shopify/WebhookSubscription/{len(shop.subscriptions)}"
                },
                "userErrors": [],
            }
            return JSONResponse({"data": {"webhookSubscriptionCreate": created}})
        if "shop" in query:
            return JSONResponse(
                {"data": {"shop": {"name": shop.name, "ianaTimezone": shop.timezone}}}
            )
        return JSONResponse({"errors": [{"message": "unsupported query"}]})

    # -- webhooks ---------------------------------------------------------------------------

    def sign(self, body: bytes) -> str:
        return base64.b64encode(
            hmac.new(self.api_secret.encode(), body, hashlib.sha256).digest()
        ).decode()

    async def emit(
        self,
        url: str,
        topic: str,
        shop: str,
        payload: Mapping[str, Any],
        *,
        webhook_id: str | None = None,
        signature: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        """POST a webhook as Shopify does; the same `webhook_id` again is a retry."""
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-API-Version": "2026-10",
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-Triggered-At": self.clock.now().isoformat(),
            "X-Shopify-Hmac-Sha256": signature if signature is not None else self.sign(body),
        }
        if client is not None:
            return await client.post(url, content=body, headers=headers)
        async with httpx.AsyncClient(timeout=5) as http:
            return await http.post(url, content=body, headers=headers)
