"""WhatsApp Business Cloud API driver: template and text sends, signed status webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
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

# Meta caps webhook payloads at 3 MB; we allow 4 MiB (research WI-3, WI-8).
WEBHOOK_MAX_BODY_BYTES = 4 * 1024 * 1024

_OTP_MAX_CHARS = 15  # authentication templates reject longer codes
_UNAVAILABLE_AFTER_AUTH_FAILURE = timedelta(seconds=60)

_PERMANENT_CODES = frozenset({100, 368, 131026, 131030, 131047, 131051, 133010})
# Seconds to wait before a retry when Meta sends no Retry-After header.
_TRANSIENT_CODES: Mapping[int, float] = {
    4: 60.0,  # application request limit
    80007: 60.0,  # WABA rate limit
    130429: 1.0,  # throughput (80 mps per number by default)
    131000: 5.0,  # generic error
    131016: 5.0,  # service unavailable
    131048: 60.0,  # spam rate limit
    131056: 6.0,  # pair rate limit: about one message per 6 s to one user
    131057: 60.0,  # account in maintenance
}
_DEFAULT_RETRY_AFTER_S = 5.0

_STATES = {
    "sent": ReportState.SENT,
    "delivered": ReportState.DELIVRD,
    "read": ReportState.READ,
    "failed": ReportState.UNDELIV,
}


class WhatsAppOptions(BaseModel):
    """Connector keys; `otp_template_language` is the language of both templates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = "https://graph.facebook.com"
    api_version: str = "v26.0"
    phone_number_id: str = Field(min_length=1)
    access_token: SecretStr
    app_secret: SecretStr
    verify_token: SecretStr
    otp_template: str = "otp_login"
    otp_template_language: str = "en_US"
    text_template: str | None = None  # a one-parameter template for text outside the 24 h window
    timeout_s: float = Field(default=10.0, gt=0)


class WhatsAppDriver:
    """Sends through one business phone number; OTPs go as authentication templates."""

    channels = frozenset({Channel.WHATSAPP})

    def __init__(
        self,
        name: str,
        options: WhatsAppOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self._options = options
        self._transport = transport
        self._clock = clock or SystemClock()
        self._client: httpx.AsyncClient | None = None
        self._sink: ReportSink | None = None
        self._closing = False
        self._unavailable_until: datetime | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        base = options.base_url.rstrip("/")
        self._messages_url = f"{base}/{options.api_version}/{options.phone_number_id}/messages"

    async def start(self, sink: ReportSink) -> None:
        self._sink = sink
        self._closing = False
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=self._options.timeout_s,
            headers={"Authorization": f"Bearer {self._options.access_token.get_secret_value()}"},
        )

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
        client = self._client
        if client is None or self._closing:
            raise SendError(SendErrorKind.TRANSIENT, f"{self.name} is not running")
        with self._tracked():
            if message.message_type is MessageType.OTP and message.otp_code is not None:
                return await self._post(client, self._otp_payload(message))
            try:
                return await self._post(client, self._text_payload(message))
            except SendError as error:
                # 131047: the 24 h customer-service window is closed; only a template may go.
                if error.provider_code != "131047" or self._options.text_template is None:
                    raise
                return await self._post(client, self._text_template_payload(message))

    def verify_handshake(
        self, mode: str | None, token: str | None, challenge: str | None
    ) -> str | None:
        """The challenge to echo when a subscribe handshake carries our verify token, else None."""
        if mode != "subscribe" or token is None or challenge is None:
            return None
        if not equal_in_constant_time(token, self._options.verify_token.get_secret_value()):
            return None
        return challenge

    def parse_webhook(
        self, headers: Mapping[str, str], raw_body: bytes
    ) -> list[DeliveryReport | InboundMessage]:
        """Verify X-Hub-Signature-256 over `raw_body`, then read statuses and inbound messages.

        Raises WebhookTooLargeError, WebhookSignatureError (before any parsing) or
        WebhookPayloadError. Duplicates and out-of-order statuses are returned as they come.
        """
        require_size_within(raw_body, WEBHOOK_MAX_BODY_BYTES)
        self._verify_signature(headers, raw_body)
        try:
            document = json.loads(raw_body)
            changes = [
                change.get("value") or {}
                for entry in document.get("entry") or []
                for change in entry.get("changes") or []
                if change.get("field") == "messages"
            ]
            events: list[DeliveryReport | InboundMessage] = []
            for value in changes:
                events.extend(self._report(status) for status in value.get("statuses") or [])
                business = (value.get("metadata") or {}).get("display_phone_number", "")
                for inbound in value.get("messages") or []:
                    message = self._inbound(inbound, business)
                    if message is not None:
                        events.append(message)
        except (ValueError, AttributeError, TypeError, KeyError) as error:
            raise WebhookPayloadError(f"not a WhatsApp webhook: {error}") from error
        return events

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
    def _tracked(self) -> Iterator[None]:
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def _otp_payload(self, message: OutboundMessage) -> dict[str, Any]:
        code = message.otp_code or ""
        if len(code) > _OTP_MAX_CHARS:
            raise SendError(SendErrorKind.PERMANENT, f"OTP longer than {_OTP_MAX_CHARS} characters")
        parameter = [{"type": "text", "text": code}]
        # The copy-code / one-tap button reads back as a URL button and needs the code again.
        components = [
            {"type": "body", "parameters": parameter},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": parameter},
        ]
        return self._template_payload(message, self._options.otp_template, components)

    def _text_template_payload(self, message: OutboundMessage) -> dict[str, Any]:
        # Template parameters may not hold newlines, tabs or more than four spaces in a row.
        text = " ".join(message.text.split())
        components = [{"type": "body", "parameters": [{"type": "text", "text": text}]}]
        return self._template_payload(message, self._options.text_template or "", components)

    def _template_payload(
        self, message: OutboundMessage, template: str, components: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {
            **self._envelope(message),
            "type": "template",
            "template": {
                "name": template,
                "language": {"code": self._options.otp_template_language},
                "components": components,
            },
        }

    def _text_payload(self, message: OutboundMessage) -> dict[str, Any]:
        return {
            **self._envelope(message),
            "type": "text",
            "text": {"preview_url": False, "body": message.text},
        }

    def _envelope(self, message: OutboundMessage) -> dict[str, Any]:
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.destination.removeprefix("+"),
            "biz_opaque_callback_data": message.id,
        }

    async def _post(self, client: httpx.AsyncClient, payload: dict[str, Any]) -> SendResult:
        try:
            response = await client.post(self._messages_url, json=payload)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise SendError(
                SendErrorKind.TRANSIENT, f"cannot reach Graph API: {error!r}"
            ) from error
        except httpx.TransportError as error:
            # The request left: Meta may have accepted it, and an OTP must not go twice.
            raise SendError(
                SendErrorKind.AMBIGUOUS, f"no answer from Graph API: {error!r}"
            ) from error
        if response.is_success:
            try:
                return SendResult(provider_ids=(str(response.json()["messages"][0]["id"]),))
            except (ValueError, LookupError, TypeError) as error:
                raise SendError(
                    SendErrorKind.AMBIGUOUS, f"accepted without a message id: {response.text[:200]}"
                ) from error
        raise self._send_error(response)

    def _send_error(self, response: httpx.Response) -> SendError:
        code: int | None = None
        reason = f"HTTP {response.status_code}"
        with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
            error = response.json()["error"]
            code = int(error["code"])
            details = (error.get("error_data") or {}).get("details")
            reason = f"{error.get('message', reason)}" + (f": {details}" if details else "")
        provider_code = str(code) if code is not None else str(response.status_code)
        if code in _PERMANENT_CODES or 132000 <= (code or 0) < 133000:
            return SendError(SendErrorKind.PERMANENT, reason, provider_code=provider_code)
        if code in _TRANSIENT_CODES or response.status_code == 429 or response.status_code >= 500:
            default_s = _TRANSIENT_CODES.get(code or 0, _DEFAULT_RETRY_AFTER_S)
            return SendError(
                SendErrorKind.TRANSIENT,
                reason,
                provider_code=provider_code,
                retry_after_s=_retry_after_s(response) or default_s,
            )
        if response.status_code == 401 or code in (0, 10, 190) or 200 <= (code or 0) < 300:
            # A revoked token or missing permission fails every send: step aside for a while.
            self._unavailable_until = self._clock.now() + _UNAVAILABLE_AFTER_AUTH_FAILURE
        return SendError(SendErrorKind.PERMANENT, reason, provider_code=provider_code)

    def _verify_signature(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        received = find_header(headers, "X-Hub-Signature-256")
        secret = self._options.app_secret.get_secret_value().encode()
        expected = "sha256=" + hmac.new(secret, raw_body, hashlib.sha256).hexdigest()
        if received is None or not equal_in_constant_time(received.strip().lower(), expected):
            raise WebhookSignatureError("X-Hub-Signature-256 does not match")

    def _report(self, status: Mapping[str, Any]) -> DeliveryReport:
        errors = status.get("errors") or [{}]
        raw = {
            key: str(status[key])
            for key in ("status", "recipient_id", "biz_opaque_callback_data")
            if status.get(key) is not None
        }
        if errors[0].get("title"):
            raw["error_title"] = str(errors[0]["title"])
        code = errors[0].get("code")
        return DeliveryReport(
            connector=self.name,
            provider_id=str(status["id"]),
            state=_STATES.get(str(status.get("status")), ReportState.UNKNOWN),
            error_code=str(code) if code is not None else None,
            done_at=_timestamp(status.get("timestamp")),
            raw=raw,
        )

    def _inbound(self, inbound: Mapping[str, Any], business: str) -> InboundMessage | None:
        kind = inbound.get("type")
        if kind == "text":
            text = inbound["text"]["body"]
        elif kind == "button":
            text = inbound["button"]["text"]
        elif kind == "interactive":
            reply = inbound["interactive"]
            text = (reply.get("button_reply") or reply.get("list_reply") or {}).get("title", "")
        else:
            return None  # media, location, reactions: nothing a text inbox can hold
        # Users with a username (BSUID) may hide their number; `from` is then absent.
        sender = inbound.get("from")
        return InboundMessage(
            connector=self.name,
            channel=Channel.WHATSAPP,
            source=f"+{sender}" if sender else str(inbound.get("from_user_id", "")),
            destination=f"+{business}" if business else "",
            text=str(text),
            received_at=_timestamp(inbound.get("timestamp")) or self._clock.now(),
        )


def _retry_after_s(response: httpx.Response) -> float | None:
    header = response.headers.get("Retry-After")
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, float(header))
    return None


def _timestamp(raw: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(raw)), UTC)
    except (ValueError, OverflowError, OSError):
        return None
