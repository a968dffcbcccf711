"""A small Message Central client for tests and examples: token, send, validate, sandbox codes."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class MessageCentralClient:
    http: httpx.AsyncClient
    customer_id: str
    password: str
    email: str | None = None
    token: str | None = None

    async def fetch_token(self) -> str:
        key = base64.b64encode(self.password.encode()).decode()
        params = {"customerId": self.customer_id, "key": key, "scope": "NEW", "country": "91"}
        if self.email:
            params["email"] = self.email
        response = await self.http.get(
            "/auth/v1/authentication/token", params=params, headers={"accept": "*/*"}
        )
        body = response.json()
        if body.get("status") != 200:
            raise AssertionError(f"token refused: {body}")
        self.token = str(body["token"])
        return self.token

    def headers(self) -> dict[str, str]:
        assert self.token, "call fetch_token() first"
        return {"authToken": self.token}

    async def send_otp(self, **params: Any) -> httpx.Response:
        query = {"countryCode": "91", "flowType": "SMS", **params}
        return await self.http.post("/verification/v3/send", params=query, headers=self.headers())

    async def validate(
        self, verification_id: str, code: str, method: str = "GET"
    ) -> httpx.Response:
        params = {"verificationId": verification_id, "code": code}
        return await self.http.request(
            method, "/verification/v3/validateOtp", params=params, headers=self.headers()
        )

    async def outbox(self) -> list[dict[str, Any]]:
        response = await self.http.get("/api/v1/sandbox/outbox", headers=self.headers())
        messages: list[dict[str, Any]] = response.json()["data"]["messages"]
        return messages

    async def sandbox_code(self, destination: str) -> str:
        """The newest code the sandbox carrier "sent" to a number or address."""
        for entry in reversed(await self.outbox()):
            if entry["destination"] == destination:
                match = re.search(r"\b(\d{4,8})\b", entry["text"])
                if match:
                    return match.group(1)
        raise AssertionError(f"nothing sent to {destination}")
