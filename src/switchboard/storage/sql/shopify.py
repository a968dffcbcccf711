"""SQL persistence of the Shopify app: shops and their sealed tokens, states, webhooks, recipients."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from switchboard.integrations.shopify.store import DataExport, ReceivedWebhook, Shop, TokenPair
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import (
    shopify_data_exports,
    shopify_oauth_states,
    shopify_recipients,
    shopify_shops,
    shopify_webhooks,
)

_shops = shopify_shops.c
_hooks = shopify_webhooks.c


def _shop(row: sa.Row[Any]) -> Shop:
    values = row._mapping
    tokens = None
    if values["access_token"] is not None and values["refresh_token"] is not None:
        tokens = TokenPair(
            access_token=values["access_token"],
            access_expires_at=values["access_expires_at"],
            refresh_token=values["refresh_token"],
            refresh_expires_at=values["refresh_expires_at"],
            scope=values["scope"],
        )
    return Shop(
        shop=values["shop"],
        account_id=values["account_id"],
        name=values["name"],
        timezone=values["timezone"],
        tokens=tokens,
        token_version=values["token_version"],
        installed_at=values["installed_at"],
        uninstalled_at=values["uninstalled_at"],
    )


def _token_values(tokens: TokenPair) -> dict[str, Any]:
    return {
        "access_token": tokens.access_token,
        "access_expires_at": tokens.access_expires_at,
        "refresh_token": tokens.refresh_token,
        "refresh_expires_at": tokens.refresh_expires_at,
        "scope": tokens.scope,
    }


class SqlShopifyStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def add_state(
        self, digest: str, account_id: str, shop: str, expires_at: datetime
    ) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                shopify_oauth_states.insert().values(
                    digest=digest, account_id=account_id, shop=shop, expires_at=expires_at
                )
            )

    async def take_state(self, digest: str, now: datetime) -> tuple[str, str] | None:
        states = shopify_oauth_states.c
        async with self._db.write() as connection:
            row = (
                await connection.execute(
                    sa.select(states.account_id, states.shop, states.expires_at).where(
                        states.digest == digest
                    )
                )
            ).first()
            # the DELETE decides: of two callbacks racing with one state, one deletes the row
            deleted = await connection.execute(
                shopify_oauth_states.delete().where(states.digest == digest)
            )
            await connection.execute(shopify_oauth_states.delete().where(states.expires_at < now))
        if row is None or deleted.rowcount != 1 or row.expires_at <= now:
            return None
        return row.account_id, row.shop

    async def save_shop(self, shop: Shop, now: datetime) -> None:
        values: dict[str, Any] = {
            "account_id": shop.account_id,
            "name": shop.name,
            "timezone": shop.timezone,
            "installed_at": shop.installed_at,
            "uninstalled_at": None,
            "refresh_lease_until": None,
            "updated_at": now,
            **(_token_values(shop.tokens) if shop.tokens else {}),
        }
        async with self._db.write() as connection:
            updated = await connection.execute(
                shopify_shops.update()
                .where(_shops.shop == shop.shop)
                .values(**values, token_version=_shops.token_version + 1)
            )
            if updated.rowcount == 0:
                await connection.execute(
                    shopify_shops.insert().values(shop=shop.shop, token_version=0, **values)
                )

    async def get_shop(self, shop: str) -> Shop | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(sa.select(shopify_shops).where(_shops.shop == shop))
            ).first()
        return _shop(row) if row else None

    async def list_shops(self, account_id: str) -> list[Shop]:
        async with self._db.read() as connection:
            rows = (
                await connection.execute(
                    sa.select(shopify_shops)
                    .where(_shops.account_id == account_id)
                    .order_by(_shops.shop)
                )
            ).all()
        return [_shop(row) for row in rows]

    async def claim_refresh(
        self, shop: str, token_version: int, now: datetime, lease_until: datetime
    ) -> bool:
        async with self._db.write() as connection:
            claimed = await connection.execute(
                shopify_shops.update()
                .where(
                    _shops.shop == shop,
                    _shops.token_version == token_version,
                    _shops.refresh_token.is_not(None),
                    sa.or_(_shops.refresh_lease_until.is_(None), _shops.refresh_lease_until < now),
                )
                .values(refresh_lease_until=lease_until)
            )
        return claimed.rowcount == 1

    async def store_tokens(self, shop: str, token_version: int, tokens: TokenPair) -> bool:
        async with self._db.write() as connection:
            stored = await connection.execute(
                shopify_shops.update()
                .where(_shops.shop == shop, _shops.token_version == token_version)
                .values(
                    **_token_values(tokens),
                    token_version=token_version + 1,
                    refresh_lease_until=None,
                )
            )
        return stored.rowcount == 1

    async def release_refresh(self, shop: str) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                shopify_shops.update().where(_shops.shop == shop).values(refresh_lease_until=None)
            )

    async def shops_to_renew(self, before: datetime) -> list[str]:
        async with self._db.read() as connection:
            rows = (
                await connection.execute(
                    sa.select(_shops.shop).where(
                        _shops.refresh_token.is_not(None), _shops.refresh_expires_at < before
                    )
                )
            ).all()
        return [row.shop for row in rows]

    async def uninstall(self, shop: str, now: datetime) -> bool:
        async with self._db.write() as connection:
            done = await connection.execute(
                shopify_shops.update()
                .where(_shops.shop == shop)
                .values(
                    access_token=None,
                    refresh_token=None,
                    access_expires_at=None,
                    refresh_expires_at=None,
                    refresh_lease_until=None,
                    token_version=_shops.token_version + 1,
                    uninstalled_at=now,
                    updated_at=now,
                )
            )
        return done.rowcount == 1

    async def delete_shop(self, shop: str) -> None:
        async with self._db.write() as connection:
            for table in (shopify_recipients, shopify_data_exports, shopify_webhooks):
                await connection.execute(table.delete().where(table.c.shop == shop))
            await connection.execute(shopify_shops.delete().where(_shops.shop == shop))

    async def add_webhook(
        self,
        *,
        webhook_id: str,
        shop: str,
        topic: str,
        api_version: str | None,
        triggered_at: datetime | None,
        body: bytes,
        now: datetime,
    ) -> bool:
        try:
            async with self._db.write() as connection:
                await connection.execute(
                    shopify_webhooks.insert().values(
                        webhook_id=webhook_id,
                        shop=shop,
                        topic=topic,
                        api_version=api_version,
                        triggered_at=triggered_at,
                        body=body.decode(),
                        status="PENDING",
                        attempts=0,
                        next_attempt_at=now,
                        received_at=now,
                    )
                )
        except IntegrityError:  # the unique webhook id: a retry of one already stored
            return False
        return True

    async def claim_webhooks(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[ReceivedWebhook]:
        async with self._db.write() as connection:
            rows = (
                await connection.execute(
                    sa.select(_hooks.id, _hooks.webhook_id, _hooks.shop, _hooks.topic,
                              _hooks.body, _hooks.attempts, _hooks.received_at)
                    .where(
                        _hooks.status == "PENDING",
                        _hooks.next_attempt_at <= now,
                        sa.or_(_hooks.lease_until.is_(None), _hooks.lease_until < now),
                    )
                    .order_by(_hooks.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()  # fmt: skip
            if rows:
                await connection.execute(
                    shopify_webhooks.update()
                    .where(_hooks.id.in_([row.id for row in rows]))
                    .values(
                        lease_owner=owner, lease_until=lease_until, attempts=_hooks.attempts + 1
                    )
                )
        return [
            ReceivedWebhook(
                id=row.id,
                webhook_id=row.webhook_id,
                shop=row.shop,
                topic=row.topic,
                body=row.body.encode(),
                attempts=row.attempts + 1,
                received_at=row.received_at,
            )
            for row in rows
        ]

    async def finish_webhook(self, id: int, status: str, now: datetime, error: str | None) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                shopify_webhooks.update()
                .where(_hooks.id == id)
                .values(
                    status=status,
                    body="",
                    processed_at=now,
                    last_error=error and error[:400],
                    lease_owner=None,
                    lease_until=None,
                )
            )

    async def retry_webhook(self, id: int, next_attempt_at: datetime, error: str) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                shopify_webhooks.update()
                .where(_hooks.id == id)
                .values(
                    next_attempt_at=next_attempt_at,
                    last_error=error[:400],
                    lease_owner=None,
                    lease_until=None,
                )
            )

    async def webhook_status(self, webhook_id: str) -> str | None:
        async with self._db.read() as connection:
            status: str | None = (
                await connection.execute(
                    sa.select(_hooks.status).where(_hooks.webhook_id == webhook_id)
                )
            ).scalar()
        return status

    async def remember_recipients(
        self, shop: str, customer_id: str | None, destinations: Sequence[str], now: datetime
    ) -> None:
        recipients = shopify_recipients.c
        async with self._db.write() as connection:
            for destination in dict.fromkeys(destinations):
                where = (recipients.shop == shop, recipients.destination == destination)
                values: dict[str, Any] = {"seen_at": now}
                if customer_id is not None:
                    values["customer_id"] = customer_id
                updated = await connection.execute(
                    shopify_recipients.update().where(*where).values(**values)
                )
                if updated.rowcount == 0:
                    await connection.execute(
                        shopify_recipients.insert().values(
                            shop=shop, destination=destination, customer_id=customer_id,
                            seen_at=now,
                        )
                    )  # fmt: skip

    async def recipients(self, shop: str, customer_id: str | None = None) -> list[str]:
        recipients = shopify_recipients.c
        query = sa.select(recipients.destination).where(recipients.shop == shop)
        if customer_id is not None:
            query = query.where(recipients.customer_id == customer_id)
        async with self._db.read() as connection:
            rows = (await connection.execute(query.order_by(recipients.destination))).all()
        return [row.destination for row in rows]

    async def forget_recipients(self, shop: str, destinations: Sequence[str]) -> None:
        recipients = shopify_recipients.c
        async with self._db.write() as connection:
            await connection.execute(
                shopify_recipients.delete().where(
                    recipients.shop == shop, recipients.destination.in_(list(destinations))
                )
            )

    async def add_export(self, export: DataExport) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                shopify_data_exports.insert().values(
                    id=export.id, shop=export.shop, account_id=export.account_id,
                    data_request_id=export.data_request_id, customer_id=export.customer_id,
                    document=export.document, created_at=export.created_at,
                )
            )  # fmt: skip

    async def list_exports(self, account_id: str) -> list[DataExport]:
        exports = shopify_data_exports.c
        async with self._db.read() as connection:
            rows = (
                await connection.execute(
                    sa.select(shopify_data_exports)
                    .where(exports.account_id == account_id)
                    .order_by(exports.created_at, exports.id)
                )
            ).all()
        return [DataExport(**row._mapping) for row in rows]

    async def delete_exports(self, shop: str, customer_id: str) -> int:
        exports = shopify_data_exports.c
        async with self._db.write() as connection:
            deleted = await connection.execute(
                shopify_data_exports.delete().where(
                    exports.shop == shop, exports.customer_id == customer_id
                )
            )
        return deleted.rowcount
