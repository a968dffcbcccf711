"""Shopify's signatures: the OAuth query HMAC, the webhook body HMAC, and our signed install links."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime

_SHOP_DOMAIN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com")


def is_shop_domain(shop: str | None) -> bool:
    """Only `<name>.myshopify.com`: the token request goes to this host, so anything else
    would let a forged callback send our client secret elsewhere."""
    return shop is not None and len(shop) <= 255 and _SHOP_DOMAIN.fullmatch(shop) is not None


def _pair(key: str, value: str) -> str:
    # Shopify escapes the delimiters so that a value cannot forge another pair
    key = key.replace("%", "%25").replace("=", "%3D")
    value = value.replace("%", "%25")
    return f"{key}={value}".replace("&", "%26")


def query_hmac(secret: str, params: Mapping[str, str]) -> str:
    """Hex HMAC-SHA256 of the query without `hmac`: the pairs sorted, joined with `&`."""
    message = "&".join(sorted(_pair(k, v) for k, v in params.items() if k != "hmac"))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def is_signed_query(secret: str, params: Mapping[str, str]) -> bool:
    given = params.get("hmac", "")
    return hmac.compare_digest(query_hmac(secret, params).encode(), given.encode())


def webhook_hmac(secret: str, body: bytes) -> str:
    """`X-Shopify-Hmac-Sha256`: base64 of HMAC-SHA256 over the raw body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def is_signed_webhook(secret: str, body: bytes, header: str | None) -> bool:
    return hmac.compare_digest(webhook_hmac(secret, body).encode(), (header or "").encode())


def sign_install_link(key: bytes, account_id: str, shop: str, expires_at: datetime) -> str:
    """An opaque token naming the customer and shop an install is for, valid until expiry."""
    claims = {"a": account_id, "s": shop, "e": int(expires_at.timestamp())}
    body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(key, body, hashlib.sha256).digest()
    return f"{body.decode().rstrip('=')}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def read_install_link(key: bytes, token: str, now: datetime) -> tuple[str, str] | None:
    """(account_id, shop) of a genuine, unexpired link; None otherwise."""
    body, _, mac = token.partition(".")
    try:
        given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
        padded = (body + "=" * (-len(body) % 4)).encode()
        expected = hmac.new(key, padded, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, given):
            return None
        claims = json.loads(base64.urlsafe_b64decode(padded))
        account_id, shop, expires = claims["a"], claims["s"], claims["e"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(account_id, str) or not isinstance(shop, str) or not isinstance(expires, int):
        return None
    if datetime.fromtimestamp(expires, UTC) <= now:
        return None
    return account_id, shop
