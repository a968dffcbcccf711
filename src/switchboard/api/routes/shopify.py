"""Shopify app HTTP: install links, shops and data exports (native API), the OAuth install, webhooks."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from switchboard.api import envelope
from switchboard.api.dependencies import AccountDep, ContainerDep
from switchboard.errors import AuthenticationError, InvalidRequestError, NotFoundError
from switchboard.integrations.shopify.store import Shop

if TYPE_CHECKING:
    from switchboard.bootstrap import Container
    from switchboard.integrations.shopify.app import ShopifyApp

router = APIRouter(tags=["shopify"])

STATE_COOKIE = "switchboard_shopify_state"
_COOKIE_PATH = "/integrations/shopify"


def _app(container: Container) -> ShopifyApp:
    if container.shopify is None:
        raise NotFoundError("the Shopify app is not configured ([integrations.shopify])")
    return container.shopify


def _shop_view(shop: Shop) -> dict[str, Any]:
    return {
        "shop": shop.shop,
        "name": shop.name,
        "timezone": shop.timezone,
        "installed": shop.installed,
        "installedAt": shop.installed_at.isoformat(),
        "uninstalledAt": shop.uninstalled_at.isoformat() if shop.uninstalled_at else None,
        "scope": shop.tokens.scope if shop.tokens else None,
    }


class InstallLinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shop: str = Field(min_length=1, max_length=255, description="acme.myshopify.com")


@router.post(
    "/api/v1/integrations/shopify/install-link",
    summary="A signed link that installs the app on a shop for this customer",
)
async def create_install_link(
    body: InstallLinkRequest, container: ContainerDep, account: AccountDep
) -> dict[str, Any]:
    url, expires_at = _app(container).install_link(account.id, body.shop)
    return envelope.success({"installUrl": url, "expiresAt": expires_at.isoformat()})


@router.get("/api/v1/integrations/shopify/shops", summary="The customer's linked shops")
async def list_shops(container: ContainerDep, account: AccountDep) -> dict[str, Any]:
    shops = await _app(container).shops(account.id)
    return envelope.success({"shops": [_shop_view(shop) for shop in shops]})


@router.get(
    "/api/v1/integrations/shopify/data-exports",
    summary="Answers to customers/data_request, for the shop owner to hand over",
)
async def list_exports(container: ContainerDep, account: AccountDep) -> dict[str, Any]:
    exports = await _app(container).exports(account.id)
    return envelope.success(
        {
            "exports": [
                {
                    "id": e.id, "shop": e.shop, "dataRequestId": e.data_request_id,
                    "customerId": e.customer_id, "createdAt": e.created_at.isoformat(),
                    "document": json.loads(e.document),
                }
                for e in exports
            ]
        }
    )  # fmt: skip


@router.get("/integrations/shopify/install", summary="Start the OAuth install (from a link)")
async def install(
    container: ContainerDep, shop: str | None = None, link: str | None = None
) -> Response:
    app = _app(container)
    url, state = await app.begin_install(shop, link)
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        STATE_COOKIE, state, max_age=600, path=_COOKIE_PATH, httponly=True,
        secure=app.settings.app_url.startswith("https://"), samesite="lax",
    )  # fmt: skip
    return response


@router.get("/integrations/shopify/callback", summary="Shopify's OAuth redirect")
async def callback(request: Request, container: ContainerDep) -> Response:
    params = dict(request.query_params)
    if len(params) != len(request.query_params.multi_items()):
        raise InvalidRequestError("a callback parameter is repeated")
    shop = await _app(container).complete_install(params, request.cookies.get(STATE_COOKIE))
    response = JSONResponse(envelope.success({"shop": shop.shop, "customerId": shop.account_id}))
    response.delete_cookie(STATE_COOKIE, path=_COOKIE_PATH)
    return response


@router.post("/integrations/shopify/webhooks", summary="Shopify's webhooks (HMAC-signed)")
async def webhooks(request: Request, container: ContainerDep) -> Response:
    app = _app(container)
    limit = container.settings.api.max_body_bytes
    body = await request.body()
    if len(body) > limit:
        return Response(status_code=413)
    try:
        await app.receive_webhook(request.headers, body)
    except AuthenticationError:
        # Shopify's rule for every app, compliance topics included: 401 on a bad HMAC
        return Response(status_code=401)
    except InvalidRequestError as exc:
        return Response(content=exc.message, status_code=400, media_type="text/plain")
    # stored (or a retry of one stored): 200 either way, so Shopify stops retrying
    return Response(status_code=200)
