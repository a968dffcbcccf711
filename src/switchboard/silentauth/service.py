"""Silent authentication use cases: start a SAUTH verification, take the device's callback,
answer a validate without a code (docs/adr/0017)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from switchboard.clock import Clock
from switchboard.domain.accounts import Account
from switchboard.domain.messages import Channel
from switchboard.domain.phone import parse_phone
from switchboard.domain.verification import VerificationRecord, VerificationStatus
from switchboard.errors import (
    AlreadyVerifiedError,
    InvalidRequestError,
    SwitchboardError,
    VerificationExpiredError,
    VerificationFailedError,
    WrongCodeError,
)
from switchboard.observability import get_logger
from switchboard.services.verification import (
    SUPPORTED_LANGUAGES,
    SendRequest,
    Started,
    VerificationService,
)
from switchboard.silentauth.number_verification import NumberVerificationClient
from switchboard.silentauth.oidc import OidcClient, OperatorError, new_code_verifier
from switchboard.silentauth.operators import Operator, OperatorDirectory
from switchboard.silentauth.store import SessionStatus, SilentAuthStore, SilentSession
from switchboard.vault import Vault

log = get_logger("switchboard.silentauth")

# the session outcomes the status view tells apart from an operator's refusal or failure
MISMATCH = "the operator reports a different number on this device"
ENDED = "the verification had already ended"


@dataclass(frozen=True, slots=True, kw_only=True)
class SilentStart:
    started: Started
    offer: dict[str, Any]  # the send answer's `silentAuth` object


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackOutcome:
    verified: bool
    fallback: Channel | None  # the channel the OTP goes out on when not verified


class SilentAuthService:
    def __init__(
        self,
        store: SilentAuthStore,
        verification: VerificationService,
        operators: OperatorDirectory,
        oidc: OidcClient,
        numbers: NumberVerificationClient,
        clock: Clock,
        *,
        pepper: bytes,
        vault: Vault,
        timeout_s: int,
        redirect_url: str | None,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._verification = verification
        self._operators = operators
        self._oidc = oidc
        self._numbers = numbers
        self._clock = clock
        # a key of its own: a state digest must not be comparable with any other digest
        self._state_key = hmac.new(pepper, b"switchboard silent-auth state", "sha256").digest()
        self._vault = vault
        self._timeout_s = timeout_s
        self._redirect_url = redirect_url
        self._on_queued = on_queued

    def _state_hash(self, state: str) -> str:
        return hmac.new(self._state_key, state.encode(), hashlib.sha256).hexdigest()

    async def start(self, account: Account, request: SendRequest) -> SilentStart:
        """A verification whose first OTP waits `timeout_s` for the operator's answer. A number
        no operator covers (or an operator unreachable now) gets its OTP at once, with the
        reason in the offer."""
        first = _first_otp_channel(request.fallback)
        operator, reason = self._operator_for(request)
        discovery = None
        if operator is not None:
            try:
                discovery = await self._oidc.discover(operator)
            except OperatorError as exc:
                log.warning(
                    "silent auth operator unavailable", operator=operator.name, error=str(exc)
                )
                operator, reason = None, "the operator's silent authentication is unavailable"
        otp_request = replace(request, flow_type=first.value)
        hold = self._timeout_s if operator is not None else 0
        started = await self._verification.start(account, otp_request, hold_first_s=hold)
        if operator is None or discovery is None or self._redirect_url is None:
            return SilentStart(
                started=started,
                offer={"available": False, "reason": reason, "fallback": first.value},
            )
        record = started.verification
        state = secrets.token_urlsafe(32)
        verifier = new_code_verifier()
        session_id = str(uuid.uuid4())
        session = SilentSession(
            id=session_id,
            verification_id=record.id,
            account_id=record.account_id,
            operator=operator.name,
            destination=record.destination,
            channel=first,
            state_hash=self._state_hash(state),
            code_verifier=self._vault.seal(verifier, f"silent-auth:{session_id}"),
            status=SessionStatus.PENDING,
            outcome=None,
            created_at=record.created_at,
            expires_at=record.expires_at,
            used_at=None,
            ended_at=None,
        )
        try:
            await self._store.add_session(session)
        except Exception:
            # without its session the link is dead: send the OTP now rather than after the window
            await self._store.fall_back(
                session, "the session could not be stored", self._clock.now()
            )
            self._on_queued()
            raise
        url = self._oidc.authorize_url(
            operator,
            discovery,
            redirect_uri=self._redirect_url,
            state=state,
            code_verifier=verifier,
        )
        return SilentStart(
            started=started,
            offer={
                "available": True,
                "authUrl": url,
                "fallback": first.value,
                "fallbackAfter": str(self._timeout_s),
            },
        )

    def _operator_for(self, request: SendRequest) -> tuple[Operator | None, str | None]:
        try:
            phone = parse_phone(request.country_code, request.mobile_number)
        except SwitchboardError:
            # the verification service refuses it with its own error (or knows a test number)
            return None, "silent authentication needs a mobile number"
        operator = self._operators.for_number(phone.e164)
        if operator is None:
            return None, "no operator offers silent authentication for this number"
        return operator, None

    async def complete_callback(
        self, *, code: str | None, state: str | None, error: str | None
    ) -> CallbackOutcome:
        """The device's redirect from the operator. The state is single use: a replayed,
        unknown or expired one is refused (400) and changes nothing."""
        if not state:
            raise InvalidRequestError("state is required")
        now = self._clock.now()
        session = await self._store.claim_session(self._state_hash(state), now)
        if session is None:
            raise InvalidRequestError(
                "this silent authentication link is unknown, expired or was already used"
            )
        operator = self._operators.named(session.operator)
        reason: str
        if operator is None:
            reason = "the operator is no longer configured"
        elif error or not code:
            # prompt=none failed: typically not on mobile data (login_required, access_denied)
            reason = f"the operator refused: {(error or 'no code')[:60]}"
        else:
            try:
                verifier = self._vault.open(session.code_verifier, f"silent-auth:{session.id}")
                token = await self._oidc.exchange_code(
                    operator,
                    code,
                    redirect_uri=self._redirect_url or "",
                    code_verifier=verifier,
                    now=now,
                )
                matched = await self._numbers.verify(operator, token, session.destination)
            except OperatorError as exc:
                reason = str(exc)
            except Exception as exc:  # any failure means the OTP, never a lost verification
                log.exception("silent auth check failed", operator=session.operator)
                reason = f"internal error ({type(exc).__name__})"
            else:
                if matched:
                    completed = await self._store.complete(session, self._clock.now())
                    if completed is not None:
                        return CallbackOutcome(verified=True, fallback=None)
                    reason = ENDED
                else:
                    reason = MISMATCH
        log.info("silent auth fell back", operator=session.operator, reason=reason)
        released = await self._store.fall_back(session, reason, self._clock.now())
        if released:
            self._on_queued()
        return CallbackOutcome(verified=False, fallback=session.channel)

    async def session_view(self, account_id: str, verification_id: int) -> dict[str, Any] | None:
        """The status API's `silentAuth` object: the session's operator, state (pending,
        verified, mismatch, operator_error, timed_out, ended), reason and times — never its
        state value, code verifier or tokens. None when the verification has no session."""
        session = await self._store.session_for(verification_id)
        if session is None or session.account_id != account_id:
            return None
        # the window of the current settings (the session keeps no copy of its own)
        fallback_at = session.created_at + timedelta(seconds=self._timeout_s)
        reason = session.outcome
        if session.status is SessionStatus.VERIFIED:
            state = "verified"
        elif session.status is SessionStatus.FALLBACK:
            state = {MISMATCH: "mismatch", ENDED: "ended"}.get(reason or "", "operator_error")
            fallback_at = session.ended_at or fallback_at
        elif self._clock.now() >= fallback_at:
            state = "timed_out"
            reason = f"no answer from the device within {self._timeout_s} s"
        else:
            state = "pending"
        # when the OTP went out (or, pending, is due); none once the operator's answer settled it
        fallback_due = state not in ("verified", "ended")
        return {
            "operator": session.operator,
            "state": state,
            "reason": reason,
            "fallback": session.channel.value,
            "fallbackAt": fallback_at.isoformat() if fallback_due else None,
            "startedAt": session.created_at.isoformat(),
            "deviceReturnedAt": session.used_at.isoformat() if session.used_at else None,
            "endedAt": session.ended_at.isoformat() if session.ended_at else None,
        }

    async def check_without_code(
        self, account: Account, verification_id: str | None, lang_id: str | None
    ) -> VerificationRecord:
        """validateOtp without `code`: 200 once silent authentication completed it; 702 while it
        is pending or after it fell back (validate the OTP then); 703/705/700 once ended
        otherwise. A verification that is not SAUTH answers as before (code is required)."""
        session = None
        if verification_id and verification_id.strip().isdigit() and len(verification_id) < 20:
            session = await self._store.session_for(int(verification_id.strip()))
        if session is None or session.account_id != account.id:
            return await self._verification.check(account, verification_id, None, lang_id)
        if lang_id and lang_id.strip().lower() not in SUPPORTED_LANGUAGES:
            raise InvalidRequestError(f"langId '{lang_id}' is not supported; only 'en' for now")
        record = await self._verification.get(account, verification_id or "")
        status = record.effective_status(self._clock.now())
        if status is VerificationStatus.VERIFIED:
            if session.status is SessionStatus.VERIFIED:
                return record
            raise AlreadyVerifiedError("this verification is already completed")
        if status is VerificationStatus.FAILED:
            raise VerificationFailedError("too many wrong codes; request a new code")
        if status is not VerificationStatus.PENDING:
            raise VerificationExpiredError("the verification has expired or was replaced")
        if session.status is SessionStatus.FALLBACK:
            raise WrongCodeError(
                "silent authentication could not confirm the number; validate the code sent by "
                f"{record.channel.value}"
            )
        raise WrongCodeError(
            "silent authentication has not completed yet; try again shortly, or validate the "
            f"code sent by {record.channel.value}"
        )


def _first_otp_channel(raw: str | list[str] | None) -> Channel:
    """SAUTH's OTP fallback: the first channel of `fallback`, else SMS (the account's own
    fallback then follows it, as for flowType=SMS)."""
    items = raw if isinstance(raw, list) else (raw or "").split(",")
    names = [item.strip().upper() for item in items if item.strip()]
    if not names:
        return Channel.SMS
    try:
        return Channel(names[0])
    except ValueError:
        raise InvalidRequestError(
            f"fallback channel '{names[0]}' is not one of SMS, WHATSAPP, RCS, EMAIL"
        ) from None
