"""The access log keeps the secrets callers put in query strings out, on every route."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest

SECRETS = {
    "hmac": "5f1e0d2c-hmac-value", "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmU",
    "code": "oauth-code-8841", "state": "nonce-state-2203", "signature": "sig-value-7d",
    "token": "tok-value-11", "session": "session-value-42", "id_token": "eyJ-id-token-9",
    "client_secret": "cs-value-55", "newPassword": "pw-value-66", "x_secret_key": "xs-value-77",
}  # fmt: skip
PLAIN = {"shop": "acme.myshopify.com", "timestamp": "1733145600"}


@pytest.mark.parametrize(
    "path",
    [
        "/integrations/shopify/callback",  # Shopify's OAuth redirect: hmac over host, code …
        "/integrations/shopify/install",
        "/console/login",
        "/healthz",
        "/no/such/route",
    ],
)
async def test_secret_query_parameters_never_reach_the_access_log(
    client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str], path: str
) -> None:
    capfd.readouterr()

    await client.get(path + "?" + urlencode({**PLAIN, **SECRETS}))

    logged = "".join(capfd.readouterr())
    assert f"path={path}" in logged, logged  # the request was logged
    for value in SECRETS.values():
        assert value not in logged
    assert "shop=acme.myshopify.com" in logged
    assert "timestamp=1733145600" in logged
