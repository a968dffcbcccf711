"""Who opened a page: Pipedrive's link-action JWT, then a short-lived form session of our own.

Pipedrive opens link actions in a new tab with `token`, an HS256 JWT signed with the app's JWT
secret that names the user and company. A page we serve carries a session of ours in a hidden
form field (not a cookie: another site cannot make the browser send it, so it is CSRF-safe),
signed with a key derived from the data key and bound to the company, the user, the selected
persons and a one-time nonce.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import jwt

from switchboard.clock import Clock
from switchboard.errors import AuthenticationError, InvalidRequestError

_AUDIENCE: Final = "switchboard:pipedrive"
_FORM_TTL: Final = timedelta(minutes=30)
_LEEWAY_S: Final = 30
_MAX_IDS: Final = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewer:
    """A Pipedrive user of a company, as proven by a signed token."""

    company_id: str
    user_id: str
    selected_ids: tuple[str, ...] = ()
    nonce: str = ""


class PageAuthenticator:
    def __init__(self, *, extension_secret: str, form_key: bytes, clock: Clock) -> None:
        self._extension_secret = extension_secret
        self._form_key = form_key
        self._clock = clock

    def _decode(self, token: str, key: str | bytes, audience: str | None = None) -> dict[str, Any]:
        try:
            # exp is checked below against the injected clock, not the wall clock
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["HS256"],
                audience=audience,
                options={"verify_exp": False, "require": ["exp"]},
            )
        except jwt.PyJWTError:
            raise AuthenticationError("the page's token is not valid") from None
        try:
            expires = float(claims["exp"])
        except (TypeError, ValueError):
            raise AuthenticationError("the page's token is not valid") from None
        if expires + _LEEWAY_S < self._clock.now().timestamp():
            raise AuthenticationError("the page's token has expired; open it from Pipedrive again")
        return claims

    def from_pipedrive(
        self,
        token: str | None,
        *,
        company_id: str | None = None,
        user_id: str | None = None,
        selected_ids: str | None = None,
    ) -> Viewer:
        """Check a link action's `token`; the URL's companyId/userId must agree with it."""
        if not token:
            raise AuthenticationError("open this page from Pipedrive (no token)")
        claims = self._decode(token, self._extension_secret)
        company = str(claims.get("companyId") or claims.get("company_id") or "")
        user = str(claims.get("userId") or claims.get("user_id") or "")
        if not company or not user:
            raise AuthenticationError("the page's token names no company or user")
        for given, proven in ((company_id, company), (user_id, user)):
            if given and not hmac.compare_digest(given.encode(), proven.encode()):
                raise AuthenticationError("the page's token is for another company or user")
        return Viewer(company_id=company, user_id=user, selected_ids=parse_ids(selected_ids))

    def form_session(self, viewer: Viewer) -> str:
        """A signed session for the page's form, with a fresh one-time nonce."""
        now = self._clock.now()
        claims = {
            "aud": _AUDIENCE, "cid": viewer.company_id, "uid": viewer.user_id,
            "ids": list(viewer.selected_ids), "jti": secrets.token_urlsafe(18),
            "iat": int(now.timestamp()), "exp": int((now + _FORM_TTL).timestamp()),
        }  # fmt: skip
        return jwt.encode(claims, self._form_key, algorithm="HS256")

    def from_form(self, session: str | None) -> Viewer:
        if not session:
            raise AuthenticationError("the form's session is missing; open it from Pipedrive again")
        claims = self._decode(session, self._form_key, audience=_AUDIENCE)
        ids = claims.get("ids") or []
        if not isinstance(ids, list):
            raise AuthenticationError("the page's token is not valid")
        return Viewer(
            company_id=str(claims.get("cid", "")),
            user_id=str(claims.get("uid", "")),
            selected_ids=tuple(str(i) for i in ids),
            nonce=str(claims.get("jti", "")),
        )


def parse_ids(raw: str | None) -> tuple[str, ...]:
    """`selectedIds=1,2,3` → ("1", "2", "3"); each a positive integer, kept in order, once."""
    seen: dict[str, None] = {}
    for part in (raw or "").split(","):
        value = part.strip()
        if not value:
            continue
        if not value.isdigit() or len(value) > 18:
            raise InvalidRequestError(f"selectedIds has '{value[:20]}', not a person id")
        seen.setdefault(value.lstrip("0") or "0", None)
        if len(seen) > _MAX_IDS:
            break
    return tuple(seen)
