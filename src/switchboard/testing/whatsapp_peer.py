"""A fake WhatsApp Cloud API (Graph) on loopback: sends, templates, errors and signed webhooks.

It checks what Meta checks (bearer token, phone number id, payload shape, template name and
parameter count, the 24 h window for free text, an optional test allow-list) and answers with
Meta's bodies. Its webhooks carry a real X-Hub-Signature-256 over the exact bytes it posts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from switchboard.testing.loopback import LoopbackServer, RecordedRequest

# Graph answers; the HTTP status Meta uses for each code we mimic.
_ERRORS: Mapping[int, tuple[int, str]] = {
    100: (400, "Invalid parameter"),
    190: (401, "Error validating access token"),
    368: (400, "Temporarily blocked for policies violations"),
    4: (400, "Application request limit reached"),
    80007: (400, "Rate limit issues"),
    130429: (400, "Rate limit hit"),
    131000: (500, "Something went wrong"),
    131016: (503, "Service unavailable"),
    131026: (400, "Message Undeliverable"),
    131030: (400, "Recipient phone number not in allowed list"),
    131047: (400, "Re-engagement message"),
    131051: (400, "Unsupported message type"),
    131056: (400, "(Business Account, Consumer Account) pair rate limit hit"),
    132000: (400, "Number of parameters does not match the expected number of params"),
    132001: (404, "Template name does not exist in the translation"),
    133010: (400, "Phone number not registered"),
}
_PLACEHOLDER = re.compile(r"\{\{\d+\}\}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptedMessage:
    wamid: str
    to: str
    type: str  # "text" or "template"
    payload: Mapping[str, Any]

    @property
    def callback_data(self) -> str | None:
        value = self.payload.get("biz_opaque_callback_data")
        return str(value) if value is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    name: str
    language: str
    category: str  # AUTHENTICATION, UTILITY, MARKETING
    body: str  # with {{1}}-style placeholders


class _GraphError(Exception):
    def __init__(self, code: int, details: str = "", http_status: int | None = None) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.http_status = http_status


class WhatsAppPeer:
    """Serve with start()/stop(); point WhatsAppOptions.base_url at `url`."""

    def __init__(
        self,
        *,
        access_token: str | None = None,
        app_secret: str | None = None,
        api_version: str = "v26.0",
        phone_number_id: str = "100000000000001",
        waba_id: str = "200000000000001",
        display_phone_number: str = "15550001111",
        enforce_window: bool = True,
    ) -> None:
        # Fresh secrets per peer unless the test pins them.
        self.access_token = access_token or secrets.token_urlsafe(24)
        self.app_secret = app_secret or secrets.token_urlsafe(24)
        self.api_version = api_version
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        self.display_phone_number = display_phone_number
        self.enforce_window = enforce_window
        self.allow_list: set[str] | None = None  # digits; None = a production number
        self.requests: list[RecordedRequest] = []
        self.accepted: list[AcceptedMessage] = []
        self.templates: dict[str, Template] = {
            "otp_login": Template(
                name="otp_login",
                language="en_US",
                category="AUTHENTICATION",
                body="*{{1}}* is your verification code.",
            )
        }
        self._open_windows: set[str] = set()
        self._scripted: deque[_GraphError] = deque()
        self._delays: deque[float] = deque()
        routes = [
            Route(
                f"/{api_version}/{{phone_number_id}}/messages",
                self._post_message,
                methods=["POST"],
            ),
            Route(
                f"/{api_version}/{{waba_id}}/message_templates",
                self._templates,
                methods=["GET", "POST"],
            ),
        ]
        self._server = LoopbackServer(Starlette(routes=routes))

    @property
    def url(self) -> str:
        return self._server.url

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    def fail_next(self, code: int, *, times: int = 1, http_status: int | None = None) -> None:
        """Answer the next `times` sends with Graph error `code` (131026, 131030, 130429 …)."""
        for _ in range(times):
            self._scripted.append(_GraphError(code, "scripted by the test", http_status))

    def delay_next(self, seconds: float) -> None:
        """Accept the next send but answer only after `seconds` (a response timeout)."""
        self._delays.append(seconds)

    def open_window(self, number: str) -> None:
        """Start the 24 h customer-service window, as an inbound message from `number` does."""
        self._open_windows.add(number.removeprefix("+"))

    def sign(self, body: bytes) -> str:
        digest = hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()
        return f"sha256={digest}"

    def status_body(
        self,
        wamid: str,
        status: str,
        *,
        error_code: int | None = None,
        timestamp: int | None = None,
    ) -> bytes:
        """A status webhook for an accepted message; `status` ∈ sent, delivered, read, failed."""
        message = next((m for m in self.accepted if m.wamid == wamid), None)
        entry: dict[str, Any] = {
            "id": wamid,
            "status": status,
            "timestamp": str(timestamp if timestamp is not None else int(time.time())),
            "recipient_id": message.to if message else "",
            "pricing": {"billable": True, "pricing_model": "PMP", "category": "authentication"},
        }
        if message is not None and message.callback_data is not None:
            entry["biz_opaque_callback_data"] = message.callback_data
        if error_code is not None:
            title = _ERRORS.get(error_code, (400, "Error"))[1]
            entry["errors"] = [
                {
                    "code": error_code,
                    "title": title,
                    "message": title,
                    "error_data": {"details": title},
                }
            ]
        return self._envelope({"statuses": [entry]})

    def inbound_body(self, sender: str, text: str, *, timestamp: int | None = None) -> bytes:
        digits = sender.removeprefix("+")
        message = {
            "from": digits,
            "id": _wamid(),
            "timestamp": str(timestamp if timestamp is not None else int(time.time())),
            "type": "text",
            "text": {"body": text},
        }
        contacts = [{"profile": {"name": "Test User"}, "wa_id": digits}]
        return self._envelope({"contacts": contacts, "messages": [message]})

    async def emit(self, url: str, body: bytes, *, signature: str | None = None) -> httpx.Response:
        """POST `body` to our webhook as Meta does, signed unless `signature` overrides it."""
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature if signature is not None else self.sign(body),
        }
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, content=body, headers=headers)

    async def emit_status(
        self, url: str, wamid: str, status: str, *, error_code: int | None = None
    ) -> httpx.Response:
        return await self.emit(url, self.status_body(wamid, status, error_code=error_code))

    async def emit_inbound(self, url: str, sender: str, text: str) -> httpx.Response:
        self.open_window(sender)
        return await self.emit(url, self.inbound_body(sender, text))

    async def verify_subscription(
        self, url: str, verify_token: str, challenge: str
    ) -> httpx.Response:
        params = {
            "hub.mode": "subscribe",
            "hub.verify_token": verify_token,
            "hub.challenge": challenge,
        }
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(url, params=params)

    def _envelope(self, value: dict[str, Any]) -> bytes:
        metadata = {
            "display_phone_number": self.display_phone_number,
            "phone_number_id": self.phone_number_id,
        }
        document = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": self.waba_id,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": metadata,
                                **value,
                            },
                        }
                    ],
                }
            ],
        }
        # Meta sends compact JSON with non-ASCII escaped; the signature covers exactly these bytes.
        return json.dumps(document, separators=(",", ":")).encode()

    async def _post_message(self, request: Request) -> Response:
        recorded = await RecordedRequest.read(request)
        self.requests.append(recorded)
        try:
            self._authorize(request)
            if request.path_params["phone_number_id"] != self.phone_number_id:
                raise _GraphError(100, "Object with this ID does not exist", 400)
            payload = recorded.json()
            if not isinstance(payload, dict):
                raise _GraphError(100, "body must be a JSON object")
            to = self._validate(payload)
            if self._scripted:
                raise self._scripted.popleft()
        except _GraphError as error:
            return _error_response(error)
        message = AcceptedMessage(wamid=_wamid(), to=to, type=payload["type"], payload=payload)
        self.accepted.append(message)
        if self._delays:
            await asyncio.sleep(self._delays.popleft())
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": payload["to"], "wa_id": to}],
                "messages": [{"id": message.wamid, "message_status": "accepted"}],
            }
        )

    def _authorize(self, request: Request) -> None:
        expected = f"Bearer {self.access_token}"
        if not hmac.compare_digest(
            request.headers.get("authorization", "").encode(), expected.encode()
        ):
            raise _GraphError(190, "Invalid OAuth access token", 401)

    def _validate(self, payload: dict[str, Any]) -> str:
        if payload.get("messaging_product") != "whatsapp":
            raise _GraphError(100, "messaging_product must be whatsapp")
        to = str(payload.get("to", "")).removeprefix("+")
        if not to.isdigit():
            raise _GraphError(100, "to must be a phone number")
        if self.allow_list is not None and to not in self.allow_list:
            raise _GraphError(131030, "Recipient phone number not in allowed list")
        kind = payload.get("type")
        if kind == "text":
            body = (payload.get("text") or {}).get("body")
            if not isinstance(body, str) or not body or len(body) > 4096:
                raise _GraphError(100, "text.body must hold 1-4096 characters")
            if self.enforce_window and to not in self._open_windows:
                raise _GraphError(
                    131047, "More than 24 hours have passed since the customer last replied"
                )
        elif kind == "template":
            self._validate_template(payload.get("template") or {})
        else:
            raise _GraphError(131051, f"type {kind!r} is not supported here")
        return to

    def _validate_template(self, template: Mapping[str, Any]) -> None:
        found = self.templates.get(str(template.get("name")))
        language = (template.get("language") or {}).get("code")
        if found is None or found.language != language:
            raise _GraphError(132001, "template name does not exist in the translation")
        components = {c.get("type"): c for c in template.get("components") or []}
        body_parameters = (components.get("body") or {}).get("parameters") or []
        if len(body_parameters) != len(_PLACEHOLDER.findall(found.body)):
            raise _GraphError(132000, "body parameter count mismatch")
        for parameter in body_parameters:
            text = str(parameter.get("text", ""))
            if "\n" in text or "\t" in text or "     " in text:
                raise _GraphError(
                    100,
                    "Param text cannot have new-line/tab characters or more than 4 spaces in a row",
                )
        if found.category == "AUTHENTICATION":
            button = components.get("button") or {}
            button_parameters = button.get("parameters") or []
            code = str(body_parameters[0].get("text", ""))
            if button.get("sub_type") != "url" or len(button_parameters) != 1:
                raise _GraphError(
                    132000, "authentication templates need the code in the URL button"
                )
            if button_parameters[0].get("text") != code or len(code) > 15:
                raise _GraphError(100, "the button must repeat the code, of at most 15 characters")

    async def _templates(self, request: Request) -> Response:
        recorded = await RecordedRequest.read(request)
        self.requests.append(recorded)
        try:
            self._authorize(request)
        except _GraphError as error:
            return _error_response(error)
        if request.method == "GET":
            data = [
                {
                    "name": t.name,
                    "language": t.language,
                    "category": t.category,
                    "status": "APPROVED",
                }
                for t in self.templates.values()
            ]
            return JSONResponse({"data": data})
        payload = recorded.json()
        body = next(
            (c.get("text", "") for c in payload.get("components", []) if c.get("type") == "BODY"),
            "*{{1}}* is your verification code.",
        )
        template = Template(
            name=str(payload["name"]),
            language=str(payload.get("language", "en_US")),
            category=str(payload.get("category", "UTILITY")).upper(),
            body=body,
        )
        self.templates[template.name] = template
        # Meta reviews templates first (PENDING); the fake approves at once.
        return JSONResponse(
            {
                "id": str(secrets.randbelow(10**15)),
                "status": "APPROVED",
                "category": template.category,
            }
        )


def _wamid() -> str:
    return "wamid." + base64.b64encode(secrets.token_bytes(24)).decode()


def _error_response(error: _GraphError) -> JSONResponse:
    default_status, title = _ERRORS.get(error.code, (400, "Error"))
    body = {
        "error": {
            "message": f"(#{error.code}) {title}",
            "type": "OAuthException",
            "code": error.code,
            "error_data": {"messaging_product": "whatsapp", "details": error.details or title},
            "fbtrace_id": secrets.token_urlsafe(12),
        }
    }
    return JSONResponse(body, status_code=error.http_status or default_status)
