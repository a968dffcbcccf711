"""The redirect the device lands on after the operator's authorize step."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from switchboard.api import envelope
from switchboard.api.dependencies import container_of

router = APIRouter(tags=["VerifyNow"])


@router.get(
    "/verification/v3/silent/callback",
    summary="Silent authentication: the operator's redirect (opened by the device)",
    description=(
        "The operator redirects the device here with `code` and `state` (or `error`). "
        "Switchboard exchanges the code, asks the operator's Number Verification API whether "
        "the device has the verification's number, and completes the verification, or sends "
        "the OTP fallback at once. A state works once."
    ),
)
async def silent_callback(request: Request) -> Any:
    container = container_of(request)
    query = request.query_params
    outcome = await container.silent_auth.complete_callback(
        code=query.get("code"), state=query.get("state"), error=query.get("error")
    )
    if outcome.verified:
        return envelope.success({"verified": True, "verificationStatus": "VERIFICATION_COMPLETED"})
    channel = outcome.fallback.value if outcome.fallback else None
    return envelope.success(
        {"verified": False, "verificationStatus": "VERIFICATION_PENDING", "fallback": channel}
    )
