"""The Shopify app's use cases: install (OAuth), tokens (expiring, rotated), webhooks in, events out."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from switchboard.automations.events import EventSink
from switchboard.clock import Clock
from switchboard.config import ShopifySettings
from switchboard.errors import AuthenticationError, InvalidRequestError, NotFoundError
from switchboard.integrations.shopify import signing, topics
from switchboard.integrations.shopify.admin import ShopifyAdmin, ShopifyApiError, TokenGrant
from switchboard.integrations.shopify.store import (
    DataExport,
    ReceivedWebhook,
    Shop,
    ShopifyStore,
    TokenPair,
)
from switchboard.observability import get_logger
from switchboard.services.personal_data import PersonalDataService
from switchboard.vault import Vault

log = get_logger("switchboard.shopify")

STATE_TTL = timedelta(minutes=10)
_REFRESH_LEASE = timedelta(seconds=30)
_REFRESH_WAIT_POLLS = 100  # × 50 ms: another process's refresh lands well within 5 s
_BATCH = 20
REFRESH_AHEAD = timedelta(days=30)
_RENEW_EVERY = timedelta(hours=1)

SHOP_QUERY = "query { shop { name ianaTimezone } }"
SUBSCRIBE_MUTATION = (
    "mutation webhookSubscriptionCreate($topic: WebhookSubscriptionTopic!, "
    "$webhookSubscription: WebhookSubscriptionInput!) { webhookSubscriptionCreate("
    "topic: $topic, webhookSubscription: $webhookSubscription) { webhookSubscription { id } "
    "userErrors { field message } } }"
)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _graphql_topic(topic: str) -> str:
    """orders/create → ORDERS_CREATE, as the WebhookSubscriptionTopic enum names it."""
    return topic.replace("/", "_").upper()


class RetryLaterError(Exception):
    """Processing a webhook failed in a way worth another try (Shopify or the database)."""


class ShopifyApp:
    def __init__(
        self,
        settings: ShopifySettings,
        store: ShopifyStore,
        admin: ShopifyAdmin,
        vault: Vault,
        events: EventSink,
        personal_data: PersonalDataService,
        clock: Clock,
        *,
        link_key: bytes,
        on_installed: Callable[[str, str], Awaitable[object]] | None = None,
        on_removed: Callable[[str, str], Awaitable[object]] | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._admin = admin
        self._vault = vault
        self._events = events
        self._personal_data = personal_data
        self._clock = clock
        self._link_key = link_key
        # (account_id, event source) → e.g. the engine's built-in automations for the shop
        self._on_installed = on_installed
        # (account_id, event source) after uninstall and shop/redact: the engine's rules, events
        # and unsent jobs for the shop go (no reminder reaches a shop's customer after it left)
        self._on_removed = on_removed
        self._owner = f"shopify-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._refreshing: dict[str, asyncio.Lock] = {}

    # -- install ----------------------------------------------------------------------------

    @property
    def redirect_uri(self) -> str:
        return f"{self.settings.app_url}/integrations/shopify/callback"

    def install_link(self, account_id: str, shop: str) -> tuple[str, datetime]:
        """A link the customer opens (or hands to the shop owner) to install the app on `shop`
        for this Switchboard customer; it names both, signed, and expires."""
        shop = shop.strip().lower()
        if not signing.is_shop_domain(shop):
            raise InvalidRequestError(f"shop '{shop}' is not a <name>.myshopify.com domain")
        expires_at = self._clock.now() + timedelta(seconds=self.settings.install_link_ttl_s)
        token = signing.sign_install_link(self._link_key, account_id, shop, expires_at)
        query = urlencode({"shop": shop, "link": token})
        return f"{self.settings.app_url}/integrations/shopify/install?{query}", expires_at

    async def begin_install(self, shop: str | None, link: str | None) -> tuple[str, str]:
        """(Shopify's authorize URL, the state nonce) for a genuine install link."""
        if not signing.is_shop_domain(shop):
            raise InvalidRequestError("shop must be a <name>.myshopify.com domain")
        assert shop is not None
        linked = signing.read_install_link(self._link_key, link or "", self._clock.now())
        if linked is None:
            raise AuthenticationError(
                "start the install from a Switchboard install link (POST "
                "/api/v1/integrations/shopify/install-link); this one is missing, altered or expired"
            )
        account_id, linked_shop = linked
        if linked_shop != shop:
            raise AuthenticationError(f"this install link is for {linked_shop}, not {shop}")
        state = secrets.token_urlsafe(32)
        await self._store.add_state(_digest(state), account_id, shop, self._clock.now() + STATE_TTL)
        query = urlencode(
            {
                "client_id": self.settings.api_key,
                "scope": ",".join(self.settings.scopes),
                "redirect_uri": self.redirect_uri,
                "state": state,
            }
        )
        return f"{self._admin.base_url(shop)}/admin/oauth/authorize?{query}", state

    async def complete_install(self, params: Mapping[str, str], browser_state: str | None) -> Shop:
        """The OAuth callback: checks the query's HMAC, the shop domain and the state (this
        browser's, once), trades the code for an expiring offline token and links the shop."""
        if not signing.is_signed_query(self.settings.api_secret, params):
            raise AuthenticationError("the callback's hmac does not match")
        shop = params.get("shop")
        if not signing.is_shop_domain(shop):
            raise InvalidRequestError("shop must be a <name>.myshopify.com domain")
        assert shop is not None
        state = params.get("state", "")
        # the state must come back to the browser that started the install (a cookie):
        # otherwise a stolen callback URL would link a shop to the wrong session
        if not state or not secrets.compare_digest(state.encode(), (browser_state or "").encode()):
            raise AuthenticationError("the OAuth state does not match this browser's install")
        taken = await self._store.take_state(_digest(state), self._clock.now())
        if taken is None:
            raise AuthenticationError("the OAuth state is unknown, used or expired; install again")
        account_id, state_shop = taken
        if state_shop != shop:
            raise AuthenticationError("the callback is for another shop than the install")
        code = params.get("code")
        if not code:
            raise InvalidRequestError("the callback carries no code")
        try:
            grant = await self._admin.exchange_code(shop, code)
            info = (await self._admin.graphql(shop, grant.access_token, SHOP_QUERY)).get("shop")
        except ShopifyApiError as exc:
            raise InvalidRequestError(f"Shopify refused the install: {exc}") from None
        info = info if isinstance(info, dict) else {}
        now = self._clock.now()
        installed = Shop(
            shop=shop,
            account_id=account_id,
            name=info.get("name") if isinstance(info.get("name"), str) else None,
            timezone=info.get("ianaTimezone")
            if isinstance(info.get("ianaTimezone"), str)
            else None,
            tokens=self._seal(shop, grant),
            token_version=0,
            installed_at=now,
        )
        await self._store.save_shop(installed, now)
        if self.settings.subscribe_webhooks:
            await self._subscribe(shop, grant.access_token)
        if self._on_installed is not None:
            await self._on_installed(account_id, f"shopify:{shop}")
        log.info("shopify shop installed", shop=shop, account_id=account_id)
        return installed

    async def _subscribe(self, shop: str, access_token: str) -> None:
        """The order, checkout and customer topics, to our webhook address (app/uninstalled
        too). A failure is logged: the shop works once shopify.app.toml declares them."""
        uri = f"{self.settings.app_url}/integrations/shopify/webhooks"
        for topic in (*topics.EVENT_TOPICS, topics.APP_UNINSTALLED):
            variables = {
                "topic": _graphql_topic(topic),
                "webhookSubscription": {"callbackUrl": uri, "format": "JSON"},
            }
            try:
                data = await self._admin.graphql(shop, access_token, SUBSCRIBE_MUTATION, variables)
            except ShopifyApiError as exc:
                log.warning("webhook subscription failed", shop=shop, topic=topic, error=str(exc))
                continue
            errors = (data.get("webhookSubscriptionCreate") or {}).get("userErrors") or []
            if errors:
                log.warning("webhook subscription refused", shop=shop, topic=topic)

    def _seal(self, shop: str, grant: TokenGrant) -> TokenPair:
        now = self._clock.now()
        return TokenPair(
            access_token=self._vault.seal(grant.access_token, f"shopify:{shop}:access_token"),
            access_expires_at=now + timedelta(seconds=grant.expires_in_s),
            refresh_token=self._vault.seal(grant.refresh_token, f"shopify:{shop}:refresh_token"),
            refresh_expires_at=now + timedelta(seconds=grant.refresh_token_expires_in_s),
            scope=grant.scope,
        )

    async def shops(self, account_id: str) -> list[Shop]:
        return await self._store.list_shops(account_id)

    # -- tokens -----------------------------------------------------------------------------

    async def access_token(self, shop: str, *, renew: bool = False) -> str:
        """A usable access token, refreshed first when it expires within the margin (or
        when `renew`: to use the refresh token before its 90 days run out).

        Single-flight: one refresher per shop in this process (a lock) and across processes
        (a lease on the row); the others wait for the pair it stores. The new pair is kept
        only if the token version is unchanged (compare-and-swap), since Shopify rotates the
        refresh token with each use."""
        lock = self._refreshing.setdefault(shop, asyncio.Lock())
        async with lock:
            seen: int | None = None
            for _ in range(_REFRESH_WAIT_POLLS):
                current = await self._store.get_shop(shop)
                if current is None or current.tokens is None:
                    raise NotFoundError(f"shop {shop} is not installed")
                tokens = current.tokens
                now = self._clock.now()
                margin = timedelta(seconds=self.settings.refresh_margin_s)
                fresh = tokens.access_expires_at - margin > now and not renew
                if fresh or (seen is not None and current.token_version != seen):
                    return self._vault.open(tokens.access_token, f"shopify:{shop}:access_token")
                seen = current.token_version
                if await self._store.claim_refresh(
                    shop, current.token_version, now, now + _REFRESH_LEASE
                ):
                    return await self._refresh(current, tokens)
                await asyncio.sleep(0.05)  # another process is refreshing: read its pair
        raise RetryLaterError(f"the token refresh of {shop} did not finish")

    async def renew_ageing_tokens(self) -> int:
        """Refresh the shops whose refresh token would expire within REFRESH_AHEAD (a shop
        with no webhooks for months would otherwise lose its token); how many were renewed."""
        renewed = 0
        for shop in await self._store.shops_to_renew(self._clock.now() + REFRESH_AHEAD):
            try:
                await self.access_token(shop, renew=True)
                renewed += 1
            except (ShopifyApiError, RetryLaterError, NotFoundError) as exc:
                log.warning("shopify token renewal failed", shop=shop, error=str(exc))
        return renewed

    async def _refresh(self, current: Shop, tokens: TokenPair) -> str:
        shop = current.shop
        refresh = self._vault.open(tokens.refresh_token, f"shopify:{shop}:refresh_token")
        try:
            grant = await self._admin.refresh(shop, refresh)
        except ShopifyApiError:
            await self._store.release_refresh(shop)
            raise
        if not await self._store.store_tokens(shop, current.token_version, self._seal(shop, grant)):
            # reinstalled or uninstalled meanwhile: that pair stands, this one is dropped
            raise RetryLaterError(f"the tokens of {shop} changed during the refresh")
        log.info("shopify token refreshed", shop=shop)
        return grant.access_token

    # -- webhooks in ------------------------------------------------------------------------

    async def receive_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Verify and store one webhook (nothing else: Shopify wants an answer within 5 s).

        Raises AuthenticationError on a bad HMAC, InvalidRequestError on missing headers;
        returns False for a webhook id already stored (a retry), True for a new one."""
        if not signing.is_signed_webhook(
            self.settings.api_secret, body, headers.get("x-shopify-hmac-sha256")
        ):
            raise AuthenticationError("X-Shopify-Hmac-Sha256 does not match the body")
        topic = (headers.get("x-shopify-topic") or "").strip()
        shop = (headers.get("x-shopify-shop-domain") or "").strip()
        webhook_id = (headers.get("x-shopify-webhook-id") or "").strip()
        if not topic or not webhook_id or not signing.is_shop_domain(shop):
            raise InvalidRequestError(
                "X-Shopify-Topic, X-Shopify-Shop-Domain and X-Shopify-Webhook-Id are required"
            )
        if len(webhook_id) > 255 or len(topic) > 64:
            raise InvalidRequestError("X-Shopify-Webhook-Id or X-Shopify-Topic is too long")
        try:
            json.loads(body)
            text = body.decode()
        except ValueError:
            raise InvalidRequestError("the webhook body is not JSON") from None
        triggered = None
        with contextlib.suppress(ValueError):
            raw = headers.get("x-shopify-triggered-at")
            triggered = datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None
            if triggered is not None and triggered.tzinfo is None:
                triggered = None
        stored = await self._store.add_webhook(
            webhook_id=webhook_id, shop=shop, topic=topic,
            api_version=(headers.get("x-shopify-api-version") or None),
            triggered_at=triggered, body=text.encode(), now=self._clock.now(),
        )  # fmt: skip
        if stored:
            self._wake.set()
        return stored

    # -- webhooks processed (the worker side) ------------------------------------------------

    async def run(self) -> None:
        """Process stored webhooks until cancelled; woken by each new one, else it polls."""
        renewed_at: datetime | None = None
        while True:
            try:
                while await self.process_due() == _BATCH:
                    pass
                if renewed_at is None or self._clock.now() - renewed_at >= _RENEW_EVERY:
                    renewed_at = self._clock.now()
                    await self.renew_ageing_tokens()
            except Exception:  # a database hiccup: the leases lapse and the rows come back
                log.exception("shopify webhook processing failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)

    async def process_due(self) -> int:
        """Lease the due webhooks and act on each; how many were leased."""
        now = self._clock.now()
        claimed = await self._store.claim_webhooks(
            self._owner, now, now + timedelta(seconds=60), _BATCH
        )
        for webhook in claimed:
            await self._process(webhook)
        return len(claimed)

    async def _process(self, webhook: ReceivedWebhook) -> None:
        try:
            await self._act(webhook)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:400]
            if webhook.attempts >= self.settings.max_attempts:
                log.error("shopify webhook given up", webhook_id=webhook.webhook_id, error=error)
                await self._store.finish_webhook(webhook.id, "FAILED", self._clock.now(), error)
                return
            delay = timedelta(seconds=min(5 * 2 ** (webhook.attempts - 1), 3600))
            log.warning("shopify webhook retried", webhook_id=webhook.webhook_id, error=error)
            await self._store.retry_webhook(webhook.id, self._clock.now() + delay, error)
            return
        await self._store.finish_webhook(webhook.id, "DONE", self._clock.now(), None)

    async def _act(self, webhook: ReceivedWebhook) -> None:
        payload = json.loads(webhook.body)
        if not isinstance(payload, dict):
            return
        shop = await self._store.get_shop(webhook.shop)
        if shop is None:
            return  # never installed, or already erased by shop/redact: nothing of it is held
        if webhook.topic == topics.APP_UNINSTALLED:
            await self._store.uninstall(shop.shop, self._clock.now())
            if self._on_removed is not None:
                await self._on_removed(shop.account_id, f"shopify:{shop.shop}")
            log.info("shopify shop uninstalled", shop=shop.shop)
            return
        if webhook.topic == topics.CUSTOMERS_DATA_REQUEST:
            await self._export_customer(shop, payload)
            return
        if webhook.topic == topics.CUSTOMERS_REDACT:
            await self._redact_customer(shop, payload)
            return
        if webhook.topic == topics.SHOP_REDACT:
            await self._redact_shop(shop)
            return
        if not shop.installed:
            return  # events after uninstall are not acted on
        context = topics.ShopContext(
            account_id=shop.account_id, shop=shop.shop, name=shop.name, timezone=shop.timezone
        )
        actions = topics.map_topic(webhook.topic, payload, context, received_at=webhook.received_at)
        if actions.destinations:
            await self._store.remember_recipients(
                shop.shop, actions.customer_id, actions.destinations, self._clock.now()
            )
        for subject in actions.clear_subjects:
            await self._events.clear_subject(shop.account_id, subject)
        for event in actions.events:
            await self._events.publish(event)

    # -- compliance -------------------------------------------------------------------------

    async def _customer_destinations(
        self, shop: Shop, customer: Mapping[str, Any]
    ) -> tuple[list[str], list[str]]:
        """(phones, e-mail addresses) of a compliance payload's customer, with every
        destination the shop's events about that customer id carried."""
        customer_id = topics.text_of(customer.get("id"))
        phones: list[str] = []
        emails: list[str] = []
        phone = topics.normalise_phone(customer.get("phone"))
        if phone:
            phones.append(phone)
        email = topics.text_of(customer.get("email"))
        if email:
            emails.append(email.lower())
        if customer_id is not None:
            for destination in await self._store.recipients(shop.shop, customer_id):
                (emails if "@" in destination else phones).append(destination)
        return list(dict.fromkeys(phones)), list(dict.fromkeys(emails))

    async def _export_customer(self, shop: Shop, payload: Mapping[str, Any]) -> None:
        customer = topics.mapping_of(payload.get("customer"))
        phones, emails = await self._customer_destinations(shop, customer)
        document = await self._personal_data.export(shop.account_id, phones=phones, emails=emails)
        request = topics.mapping_of(payload.get("data_request"))
        export = DataExport(
            id=str(uuid.uuid4()),
            shop=shop.shop,
            account_id=shop.account_id,
            data_request_id=topics.text_of(request.get("id")),
            customer_id=topics.text_of(customer.get("id")),
            document=json.dumps(
                {"shop": shop.shop, "customer": {"id": topics.text_of(customer.get("id"))},
                 "ordersRequested": payload.get("orders_requested") or [], **document}
            ),
            created_at=self._clock.now(),
        )  # fmt: skip
        await self._store.add_export(export)
        log.info("shopify data request exported", shop=shop.shop, export_id=export.id)

    async def _forget(self, shop: Shop, phones: list[str], emails: list[str]) -> None:
        await self._personal_data.erase(shop.account_id, phones=phones, emails=emails)
        for phone in phones:
            await self._events.forget_recipient(shop.account_id, phone=phone, email=None)
        for email in emails:
            await self._events.forget_recipient(shop.account_id, phone=None, email=email)
        await self._store.forget_recipients(shop.shop, [*phones, *emails])

    async def _redact_customer(self, shop: Shop, payload: Mapping[str, Any]) -> None:
        customer = topics.mapping_of(payload.get("customer"))
        phones, emails = await self._customer_destinations(shop, customer)
        await self._forget(shop, phones, emails)
        customer_id = topics.text_of(customer.get("id"))
        if customer_id is not None:
            await self._store.delete_exports(shop.shop, customer_id)
        log.info("shopify customer redacted", shop=shop.shop)

    async def _redact_shop(self, shop: Shop) -> None:
        known = await self._store.recipients(shop.shop)
        await self._forget(shop, [d for d in known if "@" not in d], [d for d in known if "@" in d])
        if self._on_removed is not None:
            await self._on_removed(shop.account_id, f"shopify:{shop.shop}")
        await self._store.delete_shop(shop.shop)
        log.info("shopify shop redacted", shop=shop.shop)

    async def exports(self, account_id: str) -> list[DataExport]:
        return await self._store.list_exports(account_id)

    async def close(self) -> None:
        await self._admin.close()
