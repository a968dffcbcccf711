"""What the console keeps: operator accounts and login sessions, and the store contract for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class SessionKind(StrEnum):
    CUSTOMER = "customer"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleSession:
    digest: str  # keyed hash of the cookie value
    kind: SessionKind
    subject_id: str  # the customer id or the operator id
    token_version: int  # the subject's at login; a password change makes it stale
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    flash: str | None = None  # sealed one-time values a POST left for the page it redirects to


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator:
    id: str
    email: str
    password_hash: str
    token_version: int
    enabled: bool
    created_at: datetime


class ConsoleStore(Protocol):
    async def add_session(self, session: ConsoleSession) -> None: ...

    async def get_session(self, digest: str) -> ConsoleSession | None:
        """The session, revoked or expired ones included (the caller decides)."""
        ...

    async def set_flash(self, digest: str, sealed: str) -> None:
        """Leave `sealed` on the session (replacing any flash not yet taken)."""
        ...

    async def take_flash(self, digest: str) -> str | None:
        """The session's flash, cleared in the same transaction (of two takers one gets it)."""
        ...

    async def revoke_session(self, digest: str, now: datetime) -> None:
        """Idempotent."""
        ...

    async def purge_sessions(self, expired_before: datetime) -> int:
        """Delete sessions that expired before the time; how many."""
        ...

    async def add_operator(self, operator: Operator) -> None:
        """Raises DuplicateResourceError when the e-mail is taken."""
        ...

    async def get_operator(self, operator_id: str) -> Operator | None: ...

    async def find_operator(self, email: str) -> Operator | None:
        """By e-mail, case-insensitively."""
        ...

    async def list_operators(self) -> list[Operator]: ...
