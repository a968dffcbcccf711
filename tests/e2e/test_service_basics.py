"""Health, readiness, API docs, and errors that always come back in the envelope."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from switchboard.bootstrap import Container
from switchboard.testing.client import MessageCentralClient


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] is True


async def test_openapi_document_and_interactive_docs(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for path in (
        "/auth/v1/authentication/token",
        "/verification/v3/send",
        "/verification/v3/validateOtp",
        "/api/v1/verifications/{verification_id}",
    ):
        assert path in document["paths"]
    assert "swagger" in (await client.get("/docs")).text.lower()


async def test_unknown_path_and_wrong_method_are_enveloped(client: httpx.AsyncClient) -> None:
    missing = await client.get("/no/such/thing")
    assert missing.status_code == 404
    assert missing.json()["responseCode"] == 400
    wrong = await client.get("/verification/v3/send")
    assert wrong.status_code == 405
    assert wrong.json()["message"] == "BAD_REQUEST"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_broken_database_gives_a_500_envelope_without_internals(
    mc: MessageCentralClient, container: Container
) -> None:
    async with container.database.write() as connection:
        await connection.execute(sa.text("DROP TABLE verification_checks"))
    sent = await mc.send_otp(mobileNumber="9876543210")
    verification_id = sent.json()["data"]["verificationId"]
    response = await mc.validate(verification_id, "1234")
    assert response.status_code == 500
    body = response.json()
    assert body["responseCode"] == 500
    assert body["message"] == "SERVER_ERROR"
    assert "request id" in body["errorMessage"]
    assert "Traceback" not in response.text
    assert "verification_checks" not in response.text
    assert response.headers["X-Request-Id"] in body["errorMessage"]


async def test_malformed_json_body_is_a_400(mc: MessageCentralClient) -> None:
    response = await mc.http.post(
        "/verification/v3/send?countryCode=91",
        content=b"{not json",
        headers={**mc.headers(), "Content-Type": "application/json"},
    )
    assert response.json()["responseCode"] == 400
    assert "JSON" in response.json()["errorMessage"]
