"""Google RCS Business Messaging driver: OAuth2 service-account auth, sends, revokes, webhooks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from switchboard.channels.base import (
    DeliveryReport,
    InboundMessage,
    OutboundMessage,
    ReportSink,
    ReportState,
    SendError,
    SendErrorKind,
    SendResult,
)
from switchboard.channels.webhooks import (
    WebhookPayloadError,
    WebhookSignatureError,
    equal_in_constant_time,
    find_header,
    require_size_within,
)
from switchboard.clock import Clock, SystemClock
from switchboard.domain.messages import Channel, MessageType
from switchboard.errors import ConfigurationError

WEBHOOK_MAX_BODY_BYTES = 1024 * 1024  # research WI-8: user events are small JSON
SCOPE = "https://www.googleapis.com/auth/rcsbusinessmessaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

_MAX_TEXT_CHARS = 3072
_ASSERTION_LIFETIME = timedelta(hours=1)  # Google's maximum
_TOKEN_REFRESH_MARGIN = timedelta(seconds=60)
_UNAVAILABLE_AFTER_AUTH_FAILURE = timedelta(seconds=60)
_RETRY_AFTER_S = {429: 10.0}
_DEFAULT_RETRY_AFTER_S = 5.0

_TRAFFIC_TYPES = {
    MessageType.OTP: "AUTHENTICATION",
    MessageType.TRANSACTIONAL: "TRANSACTION",
    MessageType.PROMOTIONAL: "PROMOTION",
}
_EVENT_STATES = {
    "DELIVERED": ReportState.DELIVRD,
    "READ": ReportState.READ,
    "TTL_EXPIRATION_REVOKED": ReportState.EXPIRED,
    # Expired but still queued for the device: it may yet arrive, so nothing is settled.
    "TTL_EXPIRATION_REVOKE_FAILED": ReportState.UNKNOWN,
}


class RcsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = "https://rcsbusinessmessaging.googleapis.com"
    # Wins over the key file's token_uri, so a regional or fake endpoint needs no key edit.
    token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
    agent_id: str = Field(min_length=1)
    service_account_file: Path
    client_token: SecretStr  # the webhook's client token: handshake and X-Goog-Signature key
    ttl_s: int = Field(default=600, ge=1)  # capped by the OTP's remaining validity
    timeout_s: float = Field(default=10.0, gt=0)


@dataclass(frozen=True, slots=True)
class ServiceAccountKey:
    client_email: str
    private_key: RSAPrivateKey
    private_key_id: str | None

    @classmethod
    def load(cls, path: Path) -> ServiceAccountKey:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            key = load_pem_private_key(document["private_key"].encode(), password=None)
            email = str(document["client_email"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ConfigurationError(f"service_account_file {path}: {error}") from error
        if not isinstance(key, RSAPrivateKey):
            raise ConfigurationError(f"service_account_file {path}: not an RSA key")
        key_id = document.get("private_key_id")
        return cls(client_email=email, private_key=key, private_key_id=key_id and str(key_id))


class RcsDriver:
    """One RBM agent; the provider id of a send is our message id, as RBM events carry it."""

    channels = frozenset({Channel.RCS})

    def __init__(
        self,
        name: str,
        options: RcsOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self._options = options
        self._transport = transport
        self._clock = clock or SystemClock()
        self._key: ServiceAccountKey | None = None
        self._client: httpx.AsyncClient | None = None
        self._sink: ReportSink | None = None
        self._closing = False
        self._unavailable_until: datetime | None = None
        self._token: str | None = None
        self._token_expires_at = datetime.min.replace(tzinfo=UTC)
        self._token_lock = asyncio.Lock()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self, sink: ReportSink) -> None:
        """Load the service-account key (ConfigurationError if unusable); the token comes lazily."""
        self._key = ServiceAccountKey.load(self._options.service_account_file)
        self._sink = sink
        self._closing = False
        self._client = httpx.AsyncClient(transport=self._transport, timeout=self._options.timeout_s)

    async def close(self) -> None:
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self._options.timeout_s)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def is_available(self) -> bool:
        if self._client is None or self._closing:
            return False
        return self._unavailable_until is None or self._clock.now() >= self._unavailable_until

    async def send(self, message: OutboundMessage) -> SendResult:
        """POST agentMessages with our message id: RBM ignores a repeated id, so retries are safe."""
        if len(message.text) > _MAX_TEXT_CHARS:
            raise SendError(SendErrorKind.PERMANENT, f"RCS text is limited to {_MAX_TEXT_CHARS}")
        body = {
            "contentMessage": {"text": message.text},
            "messageTrafficType": _TRAFFIC_TYPES[message.message_type],
            "ttl": f"{self._ttl_s(message)}s",
        }
        with self._tracked() as client:
            response = await self._call(
                client,
                "POST",
                f"/v1/phones/{message.destination}/agentMessages",
                {"messageId": message.id},
                body,
            )
        # 409: this id was taken by an earlier attempt of the same message, which got through.
        if response.is_success or response.status_code == 409:
            return SendResult(provider_ids=(message.id,))
        raise self._send_error(response)

    async def revoke(self, message: OutboundMessage) -> bool:
        """Withdraw an undelivered message (before an SMS fallback). False: delivered or unknown."""
        with self._tracked() as client:
            response = await self._call(
                client, "DELETE", f"/v1/phones/{message.destination}/agentMessages/{message.id}"
            )
        if response.is_success:
            return True
        if response.status_code == 404:
            return False
        raise self._send_error(response)

    def handshake(self, raw_body: bytes) -> str | None:
        """The `secret` to echo (plain text, 200) when a setup check carries our client token."""
        if len(raw_body) > WEBHOOK_MAX_BODY_BYTES:
            return None
        try:
            document = json.loads(raw_body)
        except ValueError:
            return None
        if not isinstance(document, dict) or set(document) != {"clientToken", "secret"}:
            return None
        token, secret = document["clientToken"], document["secret"]
        if not isinstance(token, str) or not isinstance(secret, str):
            return None
        expected = self._options.client_token.get_secret_value()
        return secret if equal_in_constant_time(token, expected) else None

    def parse_webhook(
        self, headers: Mapping[str, str], raw_body: bytes
    ) -> list[DeliveryReport | InboundMessage]:
        """Verify X-Goog-Signature over the decoded Pub/Sub data, then read the event.

        Raises WebhookTooLargeError, WebhookSignatureError (also for an envelope too broken to
        verify) or WebhookPayloadError. IS_TYPING, launch events and media return [].
        """
        require_size_within(raw_body, WEBHOOK_MAX_BODY_BYTES)
        received = find_header(headers, "X-Goog-Signature")
        try:
            message = json.loads(raw_body)["message"]
            data = base64.b64decode(message["data"], validate=True)
            attributes = message.get("attributes") or {}
        except (ValueError, LookupError, TypeError, AttributeError) as error:
            raise WebhookSignatureError("not a Pub/Sub push envelope") from error
        key = self._options.client_token.get_secret_value().encode()
        expected = base64.b64encode(hmac.new(key, data, hashlib.sha512).digest()).decode()
        if received is None or not equal_in_constant_time(received.strip(), expected):
            raise WebhookSignatureError("X-Goog-Signature does not match")
        # Attributes are outside the signature: use them to skip, never to trust.
        if attributes.get("type") == "agent_launch_event":
            return []
        try:
            event = json.loads(data)
            found = self._event(event)
        except (ValueError, LookupError, TypeError, AttributeError) as error:
            raise WebhookPayloadError(f"not an RBM event: {error}") from error
        return [found] if found is not None else []

    async def receive_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> int:
        """Parse, then hand every event to the sink; returns once all are stored."""
        if self._sink is None:
            raise RuntimeError(f"{self.name} was not started")
        events = self.parse_webhook(headers, raw_body)
        for event in events:
            if isinstance(event, DeliveryReport):
                await self._sink.on_report(event)
            else:
                await self._sink.on_inbound(event)
        return len(events)

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[httpx.AsyncClient]:
        client = self._client
        if client is None or self._closing:
            raise SendError(SendErrorKind.TRANSIENT, f"{self.name} is not running")
        self._in_flight += 1
        self._idle.clear()
        try:
            yield client
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def _ttl_s(self, message: OutboundMessage) -> int:
        if message.expires_at is None:
            return self._options.ttl_s
        remaining_s = (message.expires_at - self._clock.now()).total_seconds()
        if remaining_s <= 0:
            raise SendError(SendErrorKind.PERMANENT, "the OTP expired before it could be sent")
        return min(self._options.ttl_s, math.ceil(remaining_s))

    async def _call(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        url = self._options.base_url.rstrip("/") + path
        query = {**(params or {}), "agentId": self._options.agent_id}
        response = await self._request(client, method, url, query, body)
        if response.status_code == 401:
            # A token revoked or expired early; nothing was sent, so fetch a new one and retry once.
            self._token = None
            response = await self._request(client, method, url, query, body)
        return response

    async def _request(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        query: Mapping[str, str],
        body: Mapping[str, Any] | None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {await self._access_token(client)}"}
        try:
            return await client.request(method, url, params=query, json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise SendError(SendErrorKind.TRANSIENT, f"cannot reach RBM: {error!r}") from error
        except httpx.TransportError as error:
            # The request left; RBM deduplicates on messageId, but the caller decides.
            raise SendError(SendErrorKind.AMBIGUOUS, f"no answer from RBM: {error!r}") from error

    async def _access_token(self, client: httpx.AsyncClient) -> str:
        async with self._token_lock:
            now = self._clock.now()
            if self._token is not None and now < self._token_expires_at:
                return self._token
            response = await self._fetch_token(client, self._assertion(now))
            try:
                document = response.json()
                token = str(document["access_token"])
                lifetime = timedelta(seconds=int(document.get("expires_in", 3600)))
            except (ValueError, LookupError, TypeError) as error:
                raise SendError(SendErrorKind.TRANSIENT, "token endpoint sent no token") from error
            self._token = token
            self._token_expires_at = now + lifetime - _TOKEN_REFRESH_MARGIN
            return token

    def _assertion(self, now: datetime) -> str:
        if self._key is None:
            raise SendError(SendErrorKind.TRANSIENT, f"{self.name} is not running")
        issued_at = int(now.timestamp())
        claims = {
            "iss": self._key.client_email,
            "scope": SCOPE,
            "aud": self._options.token_url,
            "iat": issued_at,
            "exp": issued_at + int(_ASSERTION_LIFETIME.total_seconds()),
        }
        headers = {"kid": self._key.private_key_id} if self._key.private_key_id else None
        return jwt.encode(claims, self._key.private_key, algorithm="RS256", headers=headers)

    async def _fetch_token(self, client: httpx.AsyncClient, assertion: str) -> httpx.Response:
        form = {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
        try:
            response = await client.post(self._options.token_url, data=form)
        except httpx.TransportError as error:
            raise SendError(SendErrorKind.TRANSIENT, f"token endpoint: {error!r}") from error
        if response.is_success:
            return response
        if response.status_code == 429 or response.status_code >= 500:
            raise SendError(
                SendErrorKind.TRANSIENT,
                f"token endpoint: HTTP {response.status_code}",
                retry_after_s=_DEFAULT_RETRY_AFTER_S,
            )
        # invalid_grant and friends: a deleted key or wrong clock; every send would fail alike.
        self._unavailable_until = self._clock.now() + _UNAVAILABLE_AFTER_AUTH_FAILURE
        raise SendError(
            SendErrorKind.PERMANENT,
            f"token endpoint refused the service account: {response.text[:200]}",
            provider_code=str(response.status_code),
        )

    def _send_error(self, response: httpx.Response) -> SendError:
        status = response.status_code
        reason, provider_code = f"HTTP {status}", str(status)
        with contextlib.suppress(ValueError, LookupError, TypeError, AttributeError):
            error = response.json()["error"]
            reason = str(error.get("message") or reason)
            provider_code = str(error.get("status") or provider_code)
        if status == 429 or status >= 500:
            retry_after_s = _retry_after_s(response) or _RETRY_AFTER_S.get(
                status, _DEFAULT_RETRY_AFTER_S
            )
            return SendError(
                SendErrorKind.TRANSIENT,
                reason,
                provider_code=provider_code,
                retry_after_s=retry_after_s,
            )
        if status == 401:
            self._unavailable_until = self._clock.now() + _UNAVAILABLE_AFTER_AUTH_FAILURE
        # 404: not RCS-capable or the agent is not launched on that carrier; 400, 403: refused.
        return SendError(SendErrorKind.PERMANENT, reason, provider_code=provider_code)

    def _event(self, event: Mapping[str, Any]) -> DeliveryReport | InboundMessage | None:
        sent_at = _rfc3339(event.get("sendTime"))
        if "eventType" in event:
            kind = str(event["eventType"])
            state = _EVENT_STATES.get(kind)
            if state is None:
                return None  # IS_TYPING and agent-side events
            raw = {"event_type": kind}
            for field, key in (("eventId", "event_id"), ("senderPhoneNumber", "phone")):
                if event.get(field):
                    raw[key] = str(event[field])
            if event.get("phoneNumber"):
                raw["phone"] = str(event["phoneNumber"])
            return DeliveryReport(
                connector=self.name,
                provider_id=str(event["messageId"]),
                state=state,
                done_at=sent_at,
                raw=raw,
            )
        suggestion = event.get("suggestionResponse") or {}
        text = event.get("text") or suggestion.get("text") or suggestion.get("postbackData")
        if not text:
            return None  # location, files: nothing a text inbox can hold
        return InboundMessage(
            connector=self.name,
            channel=Channel.RCS,
            source=str(event["senderPhoneNumber"]),
            destination=str(event.get("agentId") or self._options.agent_id),
            text=str(text),
            received_at=sent_at or self._clock.now(),
        )


def _retry_after_s(response: httpx.Response) -> float | None:
    header = response.headers.get("Retry-After")
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, float(header))
    return None


def _rfc3339(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
