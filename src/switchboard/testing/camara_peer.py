"""A CAMARA operator on loopback: OIDC discovery, authorize, token (private_key_jwt) and
Number Verification v2 `/verify`, checking what an operator checks.

The "network" is a setting: `device_number` is the number the operator sees behind the device
that opens the authorize URL (None: not on mobile data, so `prompt=none` fails with
login_required). Authorization codes and access tokens are single use; client assertions are
verified with the client's registered public key, their audience, lifetime and `jti` replay.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from switchboard.testing.loopback import LoopbackServer, RecordedRequest

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_S = 300
TOKEN_LIFETIME_S = 300
CODE_LIFETIME_S = 60
VERIFY_PATH = "/number-verification/v2/verify"
_E164 = re.compile(r"^\+[1-9][0-9]{4,14}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(slots=True)
class _Grant:
    client_id: str
    redirect_uri: str
    number: str
    scope: str
    expires: float
    code_challenge: str | None = None
    used: bool = False


class CamaraPeer:
    """Serve with start()/stop(); register the client, point the operator settings at
    `discovery_url` and `api_url`."""

    def __init__(
        self,
        *,
        client_id: str,
        public_key: PublicKeyTypes,
        redirect_uris: tuple[str, ...],
        device_number: str | None = None,
        require_pkce: bool = True,
    ) -> None:
        self.client_id = client_id
        self.public_key = public_key
        self.redirect_uris = redirect_uris
        self.device_number = device_number
        self.require_pkce = require_pkce
        self.outage: int | None = None  # answer token and /verify with this status (503 …)
        self.discovery_outage: int | None = None
        self.requests: list[RecordedRequest] = []
        self.refusals: list[str] = []  # why the peer refused a request, newest last
        self.verified_bodies: list[dict[str, Any]] = []
        self._codes: dict[str, _Grant] = {}
        self._tokens: dict[str, _Grant] = {}
        self._seen_jti: set[str] = set()
        routes = [
            Route("/.well-known/openid-configuration", self._discovery, methods=["GET"]),
            Route("/authorize", self._authorize, methods=["GET"]),
            Route("/token", self._token, methods=["POST"]),
            Route(VERIFY_PATH, self._verify, methods=["POST"]),
        ]
        self._server = LoopbackServer(Starlette(routes=routes))

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/token"

    @property
    def api_url(self) -> str:
        return f"{self.url}/number-verification/v2"

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    def _refuse(self, status: int, body: dict[str, Any], why: str) -> JSONResponse:
        self.refusals.append(why)
        return JSONResponse(body, status_code=status)

    async def _discovery(self, request: Request) -> Response:
        self.requests.append(await RecordedRequest.read(request))
        if self.discovery_outage:
            return JSONResponse({"error": "unavailable"}, status_code=self.discovery_outage)
        return JSONResponse(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": self.token_endpoint,
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
                "scopes_supported": ["openid", "number-verification:verify"],
            }
        )

    async def _authorize(self, request: Request) -> Response:
        self.requests.append(await RecordedRequest.read(request))
        query = request.query_params
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            # never redirect to an unregistered URI (RFC 6749 §4.1.2.1)
            return self._refuse(400, {"error": "invalid_request"}, "unknown client or redirect")
        state = query.get("state", "")

        def back(**params: str) -> Response:
            return RedirectResponse(
                f"{redirect_uri}?{urlencode({**params, 'state': state})}", status_code=302
            )

        scope = query.get("scope", "").split()
        if query.get("response_type") != "code" or "openid" not in scope:
            self.refusals.append("not an OIDC code request")
            return back(error="invalid_request")
        if "number-verification:verify" not in scope or not any(
            s.startswith("dpv:") for s in scope
        ):
            self.refusals.append("scope lacks number-verification:verify or a dpv: purpose")
            return back(error="invalid_scope")
        if query.get("prompt") != "none":
            self.refusals.append("prompt is not none")
            return back(error="invalid_request")
        challenge = query.get("code_challenge")
        if (challenge or self.require_pkce) and query.get("code_challenge_method") != "S256":
            self.refusals.append("PKCE with S256 is required")
            return back(error="invalid_request")
        if self.device_number is None:  # not on this operator's mobile network
            self.refusals.append("device not on the mobile network")
            return back(error="login_required")
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Grant(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            number=self.device_number,
            scope=" ".join(scope),
            expires=time.time() + CODE_LIFETIME_S,
            code_challenge=challenge,
        )
        return back(code=code)

    def _check_assertion(self, form: Any) -> str | None:
        """Why the client's authentication fails, or None when it holds."""
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return "client_assertion_type is not jwt-bearer"
        assertion = form.get("client_assertion") or ""
        try:
            claims = jwt.decode(
                assertion,
                self.public_key,  # type: ignore[arg-type]  # the registered RSA/EC key
                algorithms=["RS256", "ES256"],
                audience=[self.token_endpoint, self.url],
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
                leeway=30,
            )
        except jwt.InvalidTokenError as exc:
            return f"client assertion rejected: {type(exc).__name__}"
        if claims["iss"] != self.client_id or claims["sub"] != self.client_id:
            return "client assertion iss/sub is not the client"
        if form.get("client_id") not in (None, self.client_id):
            return "client_id does not match the assertion"
        if int(claims["exp"]) - time.time() > MAX_ASSERTION_LIFETIME_S + 30:
            return "client assertion lives longer than 5 minutes"
        if claims["jti"] in self._seen_jti:
            return "client assertion replayed (jti seen)"
        self._seen_jti.add(str(claims["jti"]))
        return None

    async def _token(self, request: Request) -> Response:
        self.requests.append(await RecordedRequest.read(request))
        if self.outage:
            return JSONResponse({"error": "temporarily_unavailable"}, status_code=self.outage)
        form = await request.form()
        why = self._check_assertion(form)
        if why is not None:
            return self._refuse(401, {"error": "invalid_client"}, why)
        if form.get("grant_type") != "authorization_code":
            return self._refuse(400, {"error": "unsupported_grant_type"}, "not a code grant")
        grant = self._codes.get(str(form.get("code") or ""))
        if grant is None or grant.used or grant.expires < time.time():
            return self._refuse(400, {"error": "invalid_grant"}, "unknown, used or expired code")
        grant.used = True  # an authorization code works once (RFC 6749 §4.1.2)
        if form.get("redirect_uri") != grant.redirect_uri:
            return self._refuse(400, {"error": "invalid_grant"}, "redirect_uri differs")
        if grant.code_challenge is not None:
            verifier = str(form.get("code_verifier") or "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.code_challenge:
                return self._refuse(400, {"error": "invalid_grant"}, "PKCE verifier mismatch")
        token = secrets.token_urlsafe(32)
        self._tokens[token] = _Grant(
            client_id=grant.client_id,
            redirect_uri=grant.redirect_uri,
            number=grant.number,
            scope=grant.scope,
            expires=time.time() + TOKEN_LIFETIME_S,
        )
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_S,
                "scope": grant.scope,
            },
            headers={"Cache-Control": "no-store"},
        )

    def _error(self, status: int, code: str, message: str, request: Request) -> JSONResponse:
        self.refusals.append(f"{code}: {message}")
        headers = {}
        if "x-correlator" in request.headers:
            headers["x-correlator"] = request.headers["x-correlator"]
        return JSONResponse(
            {"status": status, "code": code, "message": message},
            status_code=status,
            headers=headers,
        )

    async def _verify(self, request: Request) -> Response:
        recorded = await RecordedRequest.read(request)
        self.requests.append(recorded)
        if self.outage:
            return self._error(self.outage, "UNAVAILABLE", "Service unavailable", request)
        authorization = request.headers.get("authorization", "")
        grant = self._tokens.get(authorization.removeprefix("Bearer ").strip())
        if not authorization.startswith("Bearer ") or grant is None or grant.used:
            return self._error(401, "UNAUTHENTICATED", "Invalid or used access token", request)
        if grant.expires < time.time():
            return self._error(401, "UNAUTHENTICATED", "Access token expired", request)
        grant.used = True  # CAMARA NumberVerification 2.1.1: single-use tokens
        try:
            body = recorded.json()
        except ValueError:
            return self._error(400, "INVALID_ARGUMENT", "Body is not JSON", request)
        if not isinstance(body, dict) or set(body) - {"phoneNumber", "hashedPhoneNumber"}:
            return self._error(400, "INVALID_ARGUMENT", "Unknown properties", request)
        if len(body) != 1:
            return self._error(
                400, "INVALID_ARGUMENT", "Exactly one of phoneNumber, hashedPhoneNumber", request
            )
        self.verified_bodies.append(body)
        if "phoneNumber" in body:
            if not isinstance(body["phoneNumber"], str) or not _E164.match(body["phoneNumber"]):
                return self._error(400, "INVALID_ARGUMENT", "phoneNumber is not E.164", request)
            matched = body["phoneNumber"] == grant.number
        else:
            hashed = body["hashedPhoneNumber"]
            if not isinstance(hashed, str) or not _SHA256_HEX.match(hashed):
                return self._error(400, "INVALID_ARGUMENT", "hashedPhoneNumber is not", request)
            matched = hashed == hashlib.sha256(grant.number.encode()).hexdigest()
        headers = {}
        if "x-correlator" in request.headers:
            headers["x-correlator"] = request.headers["x-correlator"]
        return JSONResponse({"devicePhoneNumberVerified": matched}, headers=headers)
