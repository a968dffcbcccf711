"""What silent authentication keeps: a session per SAUTH verification, and the store of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from switchboard.domain.messages import Channel
from switchboard.domain.verification import VerificationRecord


class SessionStatus(StrEnum):
    PENDING = "PENDING"  # waiting for the device (or for the operator's answer)
    VERIFIED = "VERIFIED"  # the operator confirmed the number; the verification is completed
    FALLBACK = "FALLBACK"  # refused, a different number, or an error: the OTP went out


@dataclass(frozen=True, slots=True, kw_only=True)
class SilentSession:
    id: str
    verification_id: int
    account_id: str
    operator: str
    destination: str  # the E.164 number to confirm
    channel: Channel  # the OTP's channel when silent authentication does not confirm it
    state_hash: str
    code_verifier: str  # PKCE, sealed by the vault (the store never sees it in clear)
    status: SessionStatus
    outcome: str | None
    created_at: datetime
    expires_at: datetime  # the verification's expiry
    used_at: datetime | None
    ended_at: datetime | None


class SilentAuthStore(Protocol):
    async def add_session(self, session: SilentSession) -> None:
        """Store a new session (its verification already committed)."""
        ...

    async def claim_session(self, state_hash: str, now: datetime) -> SilentSession | None:
        """Mark the session of this state used and return it; None when the state is unknown,
        expired or was already presented. Of concurrent claims exactly one wins."""
        ...

    async def session_for(self, verification_id: int) -> SilentSession | None: ...

    async def complete(self, session: SilentSession, now: datetime) -> VerificationRecord | None:
        """One transaction: the pending verification becomes VERIFIED, its unsent messages are
        cancelled (and refunded), the session VERIFIED. None if the verification had already
        ended (verified by code, expired, replaced): nothing changes then."""
        ...

    async def fall_back(self, session: SilentSession, reason: str, now: datetime) -> int:
        """The session becomes FALLBACK and the verification's first OTP, still held by the
        silent window, is due now; returns how many messages were released (0 when the
        window had already passed)."""
        ...
