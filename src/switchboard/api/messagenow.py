"""MessageNow on the send endpoint (`type=SMS`): parameters in, the spec's body out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from switchboard.api import envelope
from switchboard.api.params import Params
from switchboard.domain.accounts import Account
from switchboard.domain.pricing import Currency
from switchboard.errors import InvalidRequestError
from switchboard.services.messaging import Accepted, CampaignRefusedError, MessageRequest

if TYPE_CHECKING:
    from switchboard.bootstrap import Container

_XLSX_TYPES = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/octet-stream",
    "",
}


def _request(params: Params) -> MessageRequest:
    if params.get("otpLength") is not None:
        raise InvalidRequestError(
            "otpLength applies to VerifyNow (type=OTP); with type=SMS the message is sent as given"
        )
    return MessageRequest(
        flow_type=params.get("flowType"),
        message=params.get("message") or params.get("messageText"),
        sender_id=params.get("senderId"),
        message_type=params.get("messageType"),
        template_id=params.get("templateId"),
        entity_id=params.get("entityId"),
        country_code=params.get("countryCode"),
        mobile_number=params.get("mobileNumber"),
        phone_numbers=params.get("phoneNumbers"),
        email=params.get("email"),
        subject=params.get("subject"),
        schedule_time=params.get("scheduleTime"),
        client_ref=params.get("clientRef") or params.get("mid"),
        dry_run=params.flag("dryRun"),
    )


def _view(result: Accepted, sender: str | None, currency: Currency) -> dict[str, Any]:
    preview = [
        {"text": p.text, "encoding": p.encoding, "segments": p.segments} for p in result.preview
    ]
    if result.dry_run:
        return {
            "dryRun": True,
            "responseCode": "200",
            "errorMessage": None,
            "total": result.total,
            "accepted": result.accepted,
            "invalid": result.invalid,
            "errors": result.errors,
            "preview": preview,
            "scheduledAt": result.scheduled_at.isoformat() if result.scheduled_at else None,
            # what the send would be charged (billing on), in the platform currency
            "price": None if result.price is None else currency.format(result.price),
            "currency": None if result.price is None else currency.code,
        }
    view: dict[str, Any] = {
        "verificationId": str(result.numeric_id),
        "mobileNumber": result.mobile_number,
        "responseCode": "200",
        "errorMessage": None,
        "timeout": "0",
        "smsCLI": sender,
        "transactionId": result.transaction_id,
        "scheduledAt": result.scheduled_at.isoformat() if result.scheduled_at else None,
    }
    if result.campaign_id is None:
        first = result.preview[0]
        view.update(messageId=result.message_id, encoding=first.encoding, segments=first.segments)
    else:
        view.update(
            campaignId=result.campaign_id,
            total=result.total,
            accepted=result.accepted,
            invalid=result.invalid,
            errors=result.errors,
        )
    return view


async def send(container: Container, account: Account, params: Params) -> Any:
    request = _request(params)
    upload = params.files.get("file")
    stream = None
    if upload is not None:
        name = (upload.filename or "").lower()
        content_type = (upload.content_type or "").split(";")[0].strip().lower()
        if not name.endswith(".xlsx") or content_type not in _XLSX_TYPES:
            raise InvalidRequestError(
                "file must be an .xlsx workbook (.xls, .xlsm, .csv are not accepted)"
            )
        stream = upload.file
    try:
        result = await container.messaging.send(account, request, stream)
    except CampaignRefusedError as refused:
        body = envelope.failure(
            refused.code, refused.message, {"total": refused.total, "errors": refused.errors}
        )
        mode = container.settings.api.error_http_status
        return JSONResponse(body, status_code=envelope.http_status(refused.code, mode))
    finally:
        if upload is not None:
            await upload.close()
    return envelope.success(_view(result, request.sender_id, container.billing.currency))
