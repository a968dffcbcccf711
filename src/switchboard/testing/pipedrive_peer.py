"""A fake Pipedrive on loopback: OAuth (authorize, token with refresh rotation), the company's
API (users/me, v2 persons with cursor pagination and phones, notes), 429s, link-action JWTs,
and the uninstall call it makes to an app's callback URL.

It answers with Pipedrive's shapes: the token response carries `api_domain` (this server), v2
lists carry `additional_data.next_cursor`, errors are `{"success": false, "error": …}`.
A refresh token works once: refreshing returns a new pair and kills the old refresh token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from switchboard.testing.loopback import LoopbackServer, RecordedRequest


@dataclass(slots=True)
class Person:
    id: int
    name: str
    first_name: str = ""
    last_name: str = ""
    phones: list[dict[str, Any]] = field(default_factory=list)
    emails: list[dict[str, Any]] = field(default_factory=list)

    def v2(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "first_name": self.first_name,
            "last_name": self.last_name, "phones": self.phones, "emails": self.emails,
            "owner_id": 1, "org_id": None, "add_time": "2026-11-01T10:00:00Z",
        }  # fmt: skip


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "error": message}, status, headers=headers)


class PipedrivePeer:
    """One Pipedrive company (`company_id`) with one installing user, served on 127.0.0.1."""

    def __init__(
        self,
        *,
        client_id: str = "pd-client",
        client_secret: str | None = None,
        company_id: str = "7001",
        user_id: str = "42",
        expires_in_s: int = 3600,
        page_size: int = 40,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.company_id = company_id
        self.user_id = user_id
        self.expires_in_s = expires_in_s
        self.page_size = page_size  # v2 pages hold at most this many (below the asked limit)
        self.token_delay_s = 0.0  # the token endpoint answers this late (to race refreshes)
        self.api_domain: str | None = None  # what token answers name (None: this server)
        self.persons: dict[int, Person] = {}
        self.notes: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        self.token_calls: list[str] = []  # the grant_type of each accepted token call
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.scope = "base,contacts:full"
        self._codes: dict[str, str] = {}  # code → redirect_uri
        self._rate_limited = 0
        self._retry_after = "1"
        self._failing_notes = 0
        self._next_id = 1
        self._server = LoopbackServer(
            Starlette(
                routes=[
                    Route("/oauth/authorize", self._authorize, methods=["GET"]),
                    Route("/oauth/token", self._token, methods=["POST"]),
                    Route("/api/v1/users/me", self._me, methods=["GET"]),
                    Route("/api/v2/persons", self._persons, methods=["GET"]),
                    Route("/api/v1/notes", self._add_note, methods=["POST"]),
                ]
            )
        )

    @property
    def url(self) -> str:
        return self._server.url

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    # -- what a test sets up ---------------------------------------------------------------

    def add_person(self, name: str, *phones: str | dict[str, Any], **fields: Any) -> int:
        person_id = self._next_id
        self._next_id += 1
        entries = [
            p if isinstance(p, dict) else {"value": p, "primary": i == 0, "label": "mobile"}
            for i, p in enumerate(phones)
        ]
        self.persons[person_id] = Person(id=person_id, name=name, phones=entries, **fields)
        return person_id

    def issue_code(self, redirect_uri: str) -> str:
        """What the user's consent produces: a one-time code for `redirect_uri`."""
        code = secrets.token_urlsafe(16)
        self._codes[code] = redirect_uri
        return code

    def rate_limit(self, calls: int, retry_after: str = "1") -> None:
        """The next `calls` API requests get 429 with this Retry-After."""
        self._rate_limited = calls
        self._retry_after = retry_after

    def fail_notes(self, calls: int) -> None:
        """The next `calls` note creations get 503."""
        self._failing_notes = calls

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (401), as after its hour."""
        self.access_tokens.clear()

    def link_token(
        self,
        *,
        secret: str | None = None,
        company_id: str | None = None,
        user_id: str | None = None,
        expires_in_s: int = 300,
        now: float | None = None,
    ) -> str:
        """The `token` JWT Pipedrive adds to a link action's URL (HS256, the JWT secret)."""
        issued = int(now if now is not None else time.time())
        claims = {"userId": int(user_id or self.user_id),
                  "companyId": int(company_id or self.company_id),
                  "iat": issued, "exp": issued + expires_in_s}  # fmt: skip
        return jwt.encode(claims, secret or self.client_secret, algorithm="HS256")

    def link_query(
        self, *, view: str, selected_ids: list[int], token: str | None = None, **token_args: Any
    ) -> str:
        """The query string Pipedrive opens a link action with."""
        return urlencode({
            "resource": "person", "view": view, "userId": self.user_id,
            "companyId": self.company_id, "selectedIds": ",".join(map(str, selected_ids)),
            "isShared": "false", "token": token or self.link_token(**token_args),
        })  # fmt: skip

    async def send_uninstall(
        self, client: httpx.AsyncClient, callback_url: str, *, secret: str | None = None
    ) -> httpx.Response:
        """Pipedrive's uninstall: DELETE to the callback URL, Basic client auth, JSON body."""
        return await client.request(
            "DELETE", callback_url,
            auth=(self.client_id, secret or self.client_secret),
            json={"client_id": self.client_id, "company_id": int(self.company_id),
                  "user_id": int(self.user_id), "timestamp": "2026-12-02T10:00:00.000Z"},
        )  # fmt: skip

    # -- OAuth -----------------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        self.requests.append(await RecordedRequest.read(request))
        query = request.query_params
        if query.get("client_id") != self.client_id or not query.get("redirect_uri"):
            return _error(400, "invalid client_id or redirect_uri")
        code = self.issue_code(query["redirect_uri"])
        target = (
            f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
        )
        return RedirectResponse(target, 302)

    def _client_ok(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{self.client_id}:{self.client_secret}".encode()
        return scheme == "Basic" and hmac.compare_digest(given, expected)

    async def _token(self, request: Request) -> Response:
        self.requests.append(await RecordedRequest.read(request))
        if not self._client_ok(request):
            return _error(401, "invalid client credentials")
        form = await request.form()
        grant = str(form.get("grant_type", ""))
        if self.token_delay_s:
            await asyncio.sleep(self.token_delay_s)
        if grant == "authorization_code":
            code = str(form.get("code", ""))
            if self._codes.pop(code, None) != form.get("redirect_uri"):
                return _error(400, "invalid_grant")
        elif grant == "refresh_token":
            old = str(form.get("refresh_token", ""))
            if old not in self.refresh_tokens:
                return _error(400, "invalid_grant")
            self.refresh_tokens.discard(old)  # rotation: the old refresh token dies
        else:
            return _error(400, "unsupported_grant_type")
        self.token_calls.append(grant)
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return JSONResponse({
            "access_token": access, "token_type": "Bearer", "refresh_token": refresh,
            "scope": self.scope, "expires_in": self.expires_in_s,
            "api_domain": self.api_domain or self.url,
        })  # fmt: skip

    # -- the company's API -------------------------------------------------------------------

    async def _gate(self, request: Request) -> Response | None:
        self.requests.append(await RecordedRequest.read(request))
        if self._rate_limited > 0:
            self._rate_limited -= 1
            return _error(429, "Request over limit", {"Retry-After": self._retry_after,
                                                       "x-ratelimit-remaining": "0"})  # fmt: skip
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.access_tokens:
            return _error(401, "unauthorized access")
        return None

    async def _me(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        return JSONResponse({"success": True, "data": {
            "id": int(self.user_id), "name": "Installer", "company_id": int(self.company_id),
            "company_domain": "acme", "is_admin": 1,
        }})  # fmt: skip

    async def _persons(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        query = request.query_params
        try:
            limit = min(int(query.get("limit", "100")), 500, self.page_size)
            start = (
                int(base64.urlsafe_b64decode(query["cursor"]).decode()) if "cursor" in query else 0
            )
            wanted = [int(i) for i in query["ids"].split(",")] if query.get("ids") else None
        except (ValueError, binascii.Error):
            return _error(400, "invalid parameters")
        if wanted is not None and len(wanted) > 100:
            return _error(400, "ids accepts at most 100 ids")
        matching = sorted(self.persons.values(), key=lambda p: p.id)
        if wanted is not None:
            matching = [p for p in matching if p.id in set(wanted)]
        page = matching[start : start + limit]
        more = start + limit < len(matching)
        cursor = base64.urlsafe_b64encode(str(start + limit).encode()).decode() if more else None
        return JSONResponse({"success": True, "data": [p.v2() for p in page],
                             "additional_data": {"next_cursor": cursor}})  # fmt: skip

    async def _add_note(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        if self._failing_notes > 0:
            self._failing_notes -= 1
            return _error(503, "Service unavailable")
        body = await request.json()
        if not body.get("content") or int(body.get("person_id", 0)) not in self.persons:
            return _error(400, "content and an existing person_id are required")
        note = {"id": len(self.notes) + 1, "content": body["content"],
                "person_id": int(body["person_id"])}  # fmt: skip
        self.notes.append(note)
        return JSONResponse({"success": True, "data": note}, 201)
