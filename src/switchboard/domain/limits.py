"""Send limits for verifications: resend cooldown, per-number windows and the account quota."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from switchboard.errors import LimitReachedError, RequestAlreadyExistsError


@dataclass(frozen=True, slots=True, kw_only=True)
class SendLimits:
    resend_cooldown_s: int
    sends_per_10_min: int
    sends_per_day: int
    account_daily_quota: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SendHistory:
    """What the store knows about earlier sends, read inside the sending transaction."""

    last_pending_created_at: datetime | None  # the newest still-pending verification
    sends_last_10_min: int
    sends_last_day: int
    account_sends_today: int


def check_send_limits(history: SendHistory, limits: SendLimits, now: datetime) -> None:
    """Raise 506 inside the resend cooldown, 800 when a window or the quota is used up."""
    if history.last_pending_created_at is not None:
        elapsed = (now - history.last_pending_created_at).total_seconds()
        if elapsed < limits.resend_cooldown_s:
            wait = max(1, math.ceil(limits.resend_cooldown_s - elapsed))
            raise RequestAlreadyExistsError(
                f"a code was sent to this number {int(elapsed)} s ago; resend after {wait} s",
                retry_after_s=wait,
            )
    if history.sends_last_10_min >= limits.sends_per_10_min:
        raise LimitReachedError(
            f"at most {limits.sends_per_10_min} codes per number in 10 minutes",
            retry_after_s=600,
        )
    if history.sends_last_day >= limits.sends_per_day:
        raise LimitReachedError(
            f"at most {limits.sends_per_day} codes per number in 24 hours", retry_after_s=3600
        )
    if history.account_sends_today >= limits.account_daily_quota:
        raise LimitReachedError(
            f"the account's daily quota of {limits.account_daily_quota} verifications is used up",
            retry_after_s=3600,
        )
