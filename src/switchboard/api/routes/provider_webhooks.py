"""Status webhooks from providers: WhatsApp Cloud API and Google RBM, verified over raw bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response

from switchboard.api.dependencies import container_of
from switchboard.channels.webhooks import (
    WebhookError,
    WebhookPayloadError,
    WebhookSignatureError,
    WebhookTooLargeError,
)

if TYPE_CHECKING:
    from switchboard.bootstrap import Container

router = APIRouter(prefix="/webhooks", tags=["provider webhooks"])

# Caps applied before the whole body is read (research WI-3, WI-8): Meta's payloads stay
# under 3 MB, RBM's Pub/Sub envelopes far below 1 MiB.
_MAX_BODY = {"whatsapp": 4 * 1024 * 1024, "rcs": 1024 * 1024}


def _driver(container: Container, kind: str, name: str | None) -> Any:
    from switchboard.channels.rcs import RcsDriver
    from switchboard.channels.whatsapp import WhatsAppDriver

    wanted = WhatsAppDriver if kind == "whatsapp" else RcsDriver
    matches = [
        d for n, d in container.drivers.items() if isinstance(d, wanted) and name in (None, n)
    ]
    return matches[0] if len(matches) == 1 else None


async def _body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _refusal(error: WebhookError) -> Response:
    if isinstance(error, WebhookSignatureError):
        return Response(status_code=401)
    if isinstance(error, WebhookTooLargeError):
        return Response(status_code=413)
    assert isinstance(error, WebhookPayloadError)
    return Response(status_code=400)


async def _receive(request: Request, kind: str, connector: str | None) -> Response:
    container = container_of(request)
    driver = _driver(container, kind, connector)
    if driver is None:
        return Response(status_code=404)
    raw = await _body(request, _MAX_BODY[kind])
    if raw is None:
        return Response(status_code=413)
    if kind == "rcs":
        secret = driver.handshake(raw)
        if secret is not None:
            return Response(secret, media_type="text/plain")
    try:
        await driver.receive_webhook(dict(request.headers), raw)
    except WebhookError as error:
        return _refusal(error)
    # 200 only once every event is stored: a provider retries anything else.
    return Response(status_code=200)


def _handshake(request: Request, connector: str | None) -> Response:
    driver = _driver(container_of(request), "whatsapp", connector)
    if driver is None:
        return Response(status_code=404)
    params = request.query_params
    challenge = driver.verify_handshake(
        params.get("hub.mode"), params.get("hub.verify_token"), params.get("hub.challenge")
    )
    if challenge is None:
        return Response(status_code=403)
    return Response(challenge, media_type="text/plain")


@router.get("/whatsapp", summary="WhatsApp webhook subscription handshake")
async def whatsapp_handshake(request: Request) -> Response:
    return _handshake(request, None)


@router.get("/whatsapp/{connector}", include_in_schema=False)
async def whatsapp_handshake_for(request: Request, connector: str) -> Response:
    return _handshake(request, connector)


@router.post("/whatsapp", summary="WhatsApp status and message webhooks")
async def whatsapp_events(request: Request) -> Response:
    return await _receive(request, "whatsapp", None)


@router.post("/whatsapp/{connector}", include_in_schema=False)
async def whatsapp_events_for(request: Request, connector: str) -> Response:
    return await _receive(request, "whatsapp", connector)


@router.post("/rcs", summary="Google RBM events (and its clientToken/secret setup check)")
async def rcs_events(request: Request) -> Response:
    return await _receive(request, "rcs", None)


@router.post("/rcs/{connector}", include_in_schema=False)
async def rcs_events_for(request: Request, connector: str) -> Response:
    return await _receive(request, "rcs", connector)
