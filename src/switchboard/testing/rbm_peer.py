"""A fake Google RBM on loopback: OAuth2 token endpoint, agent messages, Pub/Sub-shaped webhooks.

The token endpoint verifies the JWT-bearer assertion's RS256 signature with the service
account's public key, its issuer, audience, scope and lifetime. The API checks the bearer token,
agentId and messageId, and the message shape. Webhooks carry a real X-Goog-Signature
(base64 HMAC-SHA512 with the client token over the decoded `message.data`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from switchboard.clock import Clock, SystemClock
from switchboard.testing.loopback import LoopbackServer, RecordedRequest

SCOPE = "https://www.googleapis.com/auth/rcsbusinessmessaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

_TRAFFIC_TYPES = frozenset(
    {
        "AUTHENTICATION",
        "TRANSACTION",
        "PROMOTION",
        "SERVICEREQUEST",
        "ACKNOWLEDGEMENT",
        "MESSAGE_TRAFFIC_TYPE_UNSPECIFIED",
    }
)
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_CLOCK_SKEW_S = 60
_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")


@dataclass(slots=True, kw_only=True)
class AgentMessage:
    """A message the fake accepted; `delivered` and `revoked` move as the test emits events."""

    message_id: str
    phone: str
    payload: Mapping[str, Any]
    delivered: bool = False
    revoked: bool = False


class _RbmError(Exception):
    def __init__(self, http_status: int, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.retry_after_s = retry_after_s


class RbmPeer:
    """Serve with start()/stop(); point RcsOptions.base_url at `url`, token_url at `token_url`."""

    def __init__(
        self,
        *,
        client_email: str,
        public_key_pem: bytes,
        agent_id: str = "switchboard-test-agent",
        client_token: str | None = None,
        token_lifetime_s: int = 3600,
        clock: Clock | None = None,
    ) -> None:
        self.client_email = client_email
        self.agent_id = agent_id
        self.client_token = client_token or secrets.token_urlsafe(24)
        self.token_lifetime_s = token_lifetime_s
        self.clock = clock or SystemClock()  # share the driver's FrozenClock to move time
        self.requests: list[RecordedRequest] = []
        self.token_requests: list[RecordedRequest] = []
        self.messages: dict[str, AgentMessage] = {}
        self.not_rcs_capable: set[str] = set()
        self._public_key_pem = public_key_pem
        self._tokens: set[str] = set()
        self._scripted: deque[_RbmError] = deque()
        self._delays: deque[float] = deque()
        phone = "/v1/phones/{phone}"
        routes = [
            Route("/token", self._token, methods=["POST"]),
            Route(f"{phone}/agentMessages", self._create_message, methods=["POST"]),
            Route(
                f"{phone}/agentMessages/{{message_id}}", self._delete_message, methods=["DELETE"]
            ),
            Route(f"{phone}/capabilities", self._capabilities, methods=["GET"]),
            Route(f"{phone}/agentEvents", self._agent_event, methods=["POST"]),
        ]
        self._server = LoopbackServer(Starlette(routes=routes))

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def token_url(self) -> str:
        return f"{self._server.url}/token"

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    def fail_next(
        self, http_status: int, *, times: int = 1, retry_after_s: float | None = None
    ) -> None:
        """Answer the next `times` agentMessages creates with a Google error (429, 500, 404 …)."""
        for _ in range(times):
            self._scripted.append(_RbmError(http_status, "scripted by the test", retry_after_s))

    def delay_next(self, seconds: float) -> None:
        """Accept the next create but answer only after `seconds` (a response timeout)."""
        self._delays.append(seconds)

    def revoke_tokens(self) -> None:
        """Invalidate every issued access token, so the next call gets 401."""
        self._tokens.clear()

    def sign(self, data: bytes) -> str:
        digest = hmac.new(self.client_token.encode(), data, hashlib.sha512).digest()
        return base64.b64encode(digest).decode()

    def envelope(
        self, event: Mapping[str, Any], *, attributes: Mapping[str, str] | None = None
    ) -> tuple[bytes, bytes]:
        """(Pub/Sub push body, the decoded data that the signature covers) for one event."""
        data = json.dumps(event).encode()
        pubsub_id = str(secrets.randbelow(10**17))
        published = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        message = {
            "attributes": {"product": "RBM", **(attributes or {})},
            "data": base64.b64encode(data).decode(),
            "messageId": pubsub_id,
            "message_id": pubsub_id,
            "publishTime": published,
            "publish_time": published,
        }
        body = {
            "message": message,
            "subscription": f"projects/rbm-{self.agent_id}/subscriptions/rbm-agent",
        }
        return json.dumps(body).encode(), data

    def user_event(self, message_id: str, event_type: str) -> dict[str, Any]:
        """A DELIVERED / READ / IS_TYPING event from the user's device; delivery is recorded."""
        message = self.messages.get(message_id)
        if message is not None and event_type == "DELIVERED":
            message.delivered = True
        return {
            "agentId": self.agent_id,
            "senderPhoneNumber": message.phone if message else "+10000000000",
            "eventType": event_type,
            "eventId": f"MxR{secrets.token_hex(8)}",
            "messageId": message_id,
            "sendTime": _now(),
        }

    def server_event(
        self, message_id: str, event_type: str = "TTL_EXPIRATION_REVOKED"
    ) -> dict[str, Any]:
        message = self.messages.get(message_id)
        if message is not None and event_type == "TTL_EXPIRATION_REVOKED":
            message.revoked = True
        return {
            "phoneNumber": message.phone if message else "+10000000000",
            "messageId": message_id,
            "agentId": self.agent_id,
            "eventType": event_type,
            "eventId": f"SrV{secrets.token_hex(8)}",
            "sendTime": _now(),
        }

    def user_message(self, phone: str, text: str) -> dict[str, Any]:
        return {
            "senderPhoneNumber": phone,
            "messageId": f"MsG{secrets.token_hex(8)}",
            "sendTime": _now(),
            "agentId": self.agent_id,
            "text": text,
        }

    async def emit(
        self,
        url: str,
        event: Mapping[str, Any],
        *,
        signature: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Push one event as Pub/Sub does, signed unless `signature` overrides it."""
        body, data = self.envelope(event, attributes=attributes)
        headers = {
            "Content-Type": "application/json",
            "X-Goog-Signature": signature if signature is not None else self.sign(data),
        }
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, content=body, headers=headers)

    async def emit_handshake(
        self, url: str, *, client_token: str | None = None
    ) -> tuple[httpx.Response, str]:
        """Google's webhook setup check; returns the response and the secret it must echo."""
        secret = secrets.token_urlsafe(16)
        body = {"clientToken": client_token or self.client_token, "secret": secret}
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, json=body), secret

    async def _token(self, request: Request) -> Response:
        recorded = await RecordedRequest.read(request)
        self.token_requests.append(recorded)
        form = {key: values[0] for key, values in parse_qs(recorded.body.decode()).items()}
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self._public_key_pem,
                algorithms=["RS256"],
                audience=self.token_url,
                issuer=self.client_email,
                # Times are checked against self.clock below, not the wall clock.
                options={
                    "require": ["iss", "aud", "iat", "exp"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as error:
            return _oauth_error("invalid_grant", f"Invalid JWT: {error}")
        now = self.clock.now().timestamp()
        issued_at, expires_at = float(claims["iat"]), float(claims["exp"])
        if not issued_at - _CLOCK_SKEW_S <= now < expires_at or expires_at - issued_at > 3600:
            return _oauth_error("invalid_grant", "Invalid JWT: bad iat/exp")
        if SCOPE not in str(claims.get("scope", "")).split():
            return _oauth_error("invalid_scope", "Invalid OAuth scope")
        token = f"ya29.fake-{secrets.token_urlsafe(24)}"
        self._tokens.add(token)
        return JSONResponse(
            {"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"}
        )

    async def _create_message(self, request: Request) -> Response:
        recorded = await RecordedRequest.read(request)
        self.requests.append(recorded)
        phone = request.path_params["phone"]
        try:
            self._authorize(request)
            message_id = request.query_params.get("messageId")
            if not message_id:
                raise _RbmError(400, "messageId is required")
            payload = recorded.json()
            self._validate(phone, payload)
            if message_id in self.messages:
                # RBM ignores a repeated messageId: the original stands, nothing is sent twice.
                return JSONResponse(_agent_message(self.messages[message_id]))
            if self._scripted:
                raise self._scripted.popleft()
            if phone in self.not_rcs_capable:
                raise _RbmError(404, "Requested entity was not found.")
        except _RbmError as error:
            return _error_response(error)
        message = AgentMessage(message_id=message_id, phone=phone, payload=payload)
        self.messages[message_id] = message
        if self._delays:
            await asyncio.sleep(self._delays.popleft())
        return JSONResponse(_agent_message(message))

    async def _delete_message(self, request: Request) -> Response:
        self.requests.append(await RecordedRequest.read(request))
        try:
            self._authorize(request)
            message = self.messages.get(request.path_params["message_id"])
            if message is None or message.delivered or message.revoked:
                raise _RbmError(404, "Requested entity was not found.")
        except _RbmError as error:
            return _error_response(error)
        message.revoked = True
        return JSONResponse({})

    async def _capabilities(self, request: Request) -> Response:
        self.requests.append(await RecordedRequest.read(request))
        try:
            self._authorize(request)
            if not request.query_params.get("requestId"):
                raise _RbmError(400, "requestId is required")
            if request.path_params["phone"] in self.not_rcs_capable:
                raise _RbmError(404, "Requested entity was not found.")
        except _RbmError as error:
            return _error_response(error)
        features = ["RICHCARD_STANDALONE", "RICHCARD_CAROUSEL", "ACTION_DIAL", "ACTION_OPEN_URL"]
        return JSONResponse({"features": features})

    async def _agent_event(self, request: Request) -> Response:
        recorded = await RecordedRequest.read(request)
        self.requests.append(recorded)
        try:
            self._authorize(request)
            if not request.query_params.get("eventId"):
                raise _RbmError(400, "eventId is required")
        except _RbmError as error:
            return _error_response(error)
        return JSONResponse(recorded.json())

    def _authorize(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or header.removeprefix("Bearer ") not in self._tokens:
            raise _RbmError(401, "Request had invalid authentication credentials.")
        if request.query_params.get("agentId") != self.agent_id:
            raise _RbmError(403, "The caller does not have permission")

    def _validate(self, phone: str, payload: Any) -> None:
        if not _PHONE.match(phone):
            raise _RbmError(400, "phone number must be E.164 with a leading +")
        if not isinstance(payload, dict):
            raise _RbmError(400, "body must be an AgentMessage")
        content = payload.get("contentMessage")
        if not isinstance(content, dict) or not content:
            raise _RbmError(400, "contentMessage is required")
        if "text" in content and not 0 < len(str(content["text"])) <= 3072:
            raise _RbmError(400, "text must hold 1-3072 characters")
        if payload.get("messageTrafficType") not in _TRAFFIC_TYPES:
            raise _RbmError(400, "messageTrafficType is required for this agent")
        if "ttl" in payload and "expireTime" in payload:
            raise _RbmError(400, "ttl and expireTime are mutually exclusive")
        if "ttl" in payload and not _DURATION.match(str(payload["ttl"])):
            raise _RbmError(400, "ttl must be a duration such as 600s")


def _agent_message(message: AgentMessage) -> dict[str, Any]:
    return {
        "name": f"phones/{message.phone}/agentMessages/{message.message_id}",
        "sendTime": _now(),
        "contentMessage": message.payload.get("contentMessage"),
    }


def _error_response(error: _RbmError) -> JSONResponse:
    status = _STATUS_NAMES.get(error.http_status, "UNKNOWN")
    body = {"error": {"code": error.http_status, "message": error.message, "status": status}}
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
    return JSONResponse(body, status_code=error.http_status, headers=headers)


def _oauth_error(error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
