"""Customer accounts: identity, credentials state, and the per-account settings that override defaults."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


def new_customer_id() -> str:
    """Customer ids look like Message Central's: `C-` and 15 upper-case hex digits."""
    return "C-" + secrets.token_hex(8).upper()[:15]


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    id: str
    email: str
    name: str
    password_hash: str
    enabled: bool
    token_version: int
    failed_logins: int
    consecutive_failures: int
    first_failure_at: datetime | None
    locked_until: datetime | None
    settings: dict[str, Any] = field(default_factory=dict)
    callback_url: str | None = None
    created_at: datetime
    updated_at: datetime

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    max_failures: int
    window: timedelta
    lock: timedelta
    hard_lock_failures: int


@dataclass(frozen=True, slots=True)
class FailureState:
    failed_logins: int
    consecutive_failures: int
    first_failure_at: datetime
    locked_until: datetime | None


# Far enough to mean "until an operator unlocks it".
HARD_LOCK = timedelta(days=365 * 100)


def record_failure(account: Account, now: datetime, policy: LockoutPolicy) -> FailureState:
    """The account's failure counters after one more wrong key (research API-5)."""
    in_window = (
        account.first_failure_at is not None and now - account.first_failure_at < policy.window
    )
    failed = account.failed_logins + 1 if in_window else 1
    first = account.first_failure_at if in_window and account.first_failure_at else now
    consecutive = account.consecutive_failures + 1
    locked_until = account.locked_until
    if consecutive >= policy.hard_lock_failures:
        locked_until = now + HARD_LOCK
    elif failed >= policy.max_failures:
        locked_until = now + policy.lock
        failed, first = 0, now
    return FailureState(
        failed_logins=failed,
        consecutive_failures=consecutive,
        first_failure_at=first,
        locked_until=locked_until,
    )
