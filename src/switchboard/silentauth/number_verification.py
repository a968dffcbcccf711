"""The CAMARA Number Verification API (v2): does the device's SIM have this number?"""

from __future__ import annotations

import hashlib
import uuid

import httpx

from switchboard.silentauth.oidc import OperatorError
from switchboard.silentauth.operators import Operator


def hashed_phone_number(e164: str) -> str:
    """The spec's `hashedPhoneNumber`: SHA-256, hex, of the number with its leading +."""
    return hashlib.sha256(e164.encode()).hexdigest()


class NumberVerificationClient:
    def __init__(self, *, timeout_s: float) -> None:
        self._timeout = httpx.Timeout(timeout_s)

    async def verify(self, operator: Operator, access_token: str, e164: str) -> bool:
        """POST /verify → `devicePhoneNumberVerified`; raises OperatorError on any other answer
        (a 403 USER_NOT_AUTHENTICATED_BY_MOBILE_NETWORK: the device was not on mobile data)."""
        body = (
            {"hashedPhoneNumber": hashed_phone_number(e164)}
            if operator.hashed
            else {"phoneNumber": e164}
        )
        try:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as http:
                response = await http.post(
                    f"{operator.api_url}/verify",
                    json=body,
                    headers={
                        "Authorization": f"Bearer {access_token}",
                        "x-correlator": str(uuid.uuid4()),
                    },
                )
        except httpx.HTTPError as exc:
            raise OperatorError(f"number verification unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            code = ""
            try:
                answer = response.json()
                code = f" ({answer.get('code')})" if isinstance(answer, dict) else ""
            except ValueError:
                pass
            raise OperatorError(f"number verification answered HTTP {response.status_code}{code}")
        try:
            verified = response.json().get("devicePhoneNumberVerified")
        except (ValueError, AttributeError):
            raise OperatorError("number verification answered an unreadable body") from None
        if not isinstance(verified, bool):
            raise OperatorError("number verification answered without devicePhoneNumberVerified")
        return verified
