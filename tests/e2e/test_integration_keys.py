"""Integration keys: made, listed and revoked through the native API; they stand in for a password."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from tests.e2e.conftest import PASSWORD

from switchboard.bootstrap import Container
from switchboard.errors import AuthenticationError, InvalidRequestError
from switchboard.testing.client import MessageCentralClient


async def test_a_key_is_shown_once_listed_without_itself_and_stored_only_as_a_digest(
    mc: MessageCentralClient, client: httpx.AsyncClient, container: Container
) -> None:
    created = await client.post(
        "/api/v1/integration-keys", json={"name": "CleverTap"}, headers=mc.headers()
    )
    assert created.status_code == 200
    data = created.json()["data"]
    plain = data["key"]
    assert plain.startswith("sbk_")
    assert len(plain) > 40
    assert data["hint"] == "…" + plain[-4:]

    listed = (await client.get("/api/v1/integration-keys", headers=mc.headers())).json()["data"]
    assert [k["id"] for k in listed["keys"]] == [data["id"]]
    assert plain not in created.request.url.query.decode() + str(listed)

    async with container.database.read() as connection:
        rows = (await connection.execute(sa.text("SELECT * FROM integration_keys"))).all()
    assert len(rows) == 1
    assert all(plain not in str(value) for value in rows[0])

    account = await container.partners.authenticate(customer_id=None, email=None, secret=plain)
    assert account.id == mc.customer_id


async def test_partner_credentials_accept_the_password_or_a_key_and_refuse_alike(
    container: Container, customer: str
) -> None:
    _key, plain = await container.integration_keys.create(customer, "Pipedrive")
    partners = container.partners
    by_password = await partners.authenticate(
        customer_id=customer, email="dev@example.com", secret=PASSWORD
    )
    by_key = await partners.authenticate(customer_id=customer, email=None, secret=plain)
    by_bearer = await partners.authenticate_bearer(f"Bearer {plain}")
    assert by_password.id == by_key.id == by_bearer.id == customer

    refusals = [
        partners.authenticate(customer_id=customer, email=None, secret="wrong password"),
        partners.authenticate(customer_id="C-OTHER", email=None, secret=plain),
        partners.authenticate(customer_id=customer, email="x@example.com", secret=plain),
        partners.authenticate(customer_id=customer, email=None, secret=_altered(plain)),
        partners.authenticate_bearer(f"Basic {plain}"),
    ]
    messages = set()
    for refusal in refusals:
        with pytest.raises(AuthenticationError) as caught:
            await refusal
        messages.add(caught.value.message)
    assert len(messages) == 1


async def test_a_revoked_key_is_refused_and_revoking_is_scoped_to_the_owner(
    mc: MessageCentralClient, client: httpx.AsyncClient, container: Container
) -> None:
    other = await container.accounts.create_customer(
        email="other@example.com", password=PASSWORD, customer_id="C-OTHER"
    )
    key, plain = await container.integration_keys.create(mc.customer_id, "Shopify")
    foreign = await client.delete(
        f"/api/v1/integration-keys/{key.id}",
        headers={"authToken": container.tokens.issue(other)},
    )
    assert foreign.status_code == 400
    assert (await container.partners.authenticate_bearer(f"Bearer {plain}")).id == mc.customer_id

    revoked = await client.delete(f"/api/v1/integration-keys/{key.id}", headers=mc.headers())
    assert revoked.json()["data"]["active"] is False
    with pytest.raises(AuthenticationError):
        await container.partners.authenticate_bearer(f"Bearer {plain}")


async def test_a_disabled_customer_keys_stop_working(container: Container, customer: str) -> None:
    _key, plain = await container.integration_keys.create(customer, "CleverTap")
    await container.accounts.update(customer, enabled=False)
    with pytest.raises(AuthenticationError):
        await container.partners.authenticate(customer_id=None, email=None, secret=plain)


async def test_a_key_needs_a_name(container: Container, customer: str) -> None:
    with pytest.raises(InvalidRequestError):
        await container.integration_keys.create(customer, "  ")


def _altered(key: str) -> str:
    """The key with its last character changed (a fixed replacement is the same key 1 time in 64)."""
    return key[:-1] + ("B" if key.endswith("A") else "A")
