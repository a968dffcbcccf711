"""The dashboard's numbers: sent, delivered and failed per day, channel and country, and OTP conversion."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

from switchboard.clock import Clock
from switchboard.errors import InvalidRequestError

OUTCOMES = ("sent", "delivered", "failed")
MAX_RANGE_DAYS = 366


@dataclass(frozen=True, slots=True)
class DailyCount:
    day: str  # ISO date, UTC
    channel: str
    country_code: str
    outcome: str  # sent | delivered | failed | otp_sent | otp_verified
    count: int


class StatisticsStore(Protocol):
    async def daily_counts(self, account_id: str, first: date, last: date) -> list[DailyCount]:
        """The account's rollup rows for the days first..last (both included)."""
        ...


@dataclass(frozen=True, slots=True)
class Dashboard:
    days: list[str]
    by_day: dict[str, dict[str, int]]  # day → outcome → count
    by_channel: dict[str, dict[str, int]]
    by_country: dict[str, dict[str, int]]
    otp_sent: int
    otp_verified: int

    @property
    def conversion(self) -> float | None:
        """Verified ÷ sent, None before any OTP was sent."""
        return self.otp_verified / self.otp_sent if self.otp_sent else None


class StatisticsService:
    def __init__(self, store: StatisticsStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def dashboard(self, account_id: str, *, days: int = 14) -> Dashboard:
        """The last `days` days up to today (UTC), from the daily rollup."""
        if not 1 <= days <= MAX_RANGE_DAYS:
            raise InvalidRequestError(f"the range is 1 to {MAX_RANGE_DAYS} days")
        last = self._clock.now().date()
        first = last - timedelta(days=days - 1)
        rows = await self._store.daily_counts(account_id, first, last)
        names = [(first + timedelta(days=n)).isoformat() for n in range(days)]
        by_day: dict[str, dict[str, int]] = {d: dict.fromkeys(OUTCOMES, 0) for d in names}
        by_channel: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
        by_country: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
        otp = {"otp_sent": 0, "otp_verified": 0}
        for row in rows:
            if row.outcome in otp:
                otp[row.outcome] += row.count
                continue
            if row.outcome not in OUTCOMES:
                continue
            by_day[row.day][row.outcome] += row.count
            by_channel[row.channel][row.outcome] += row.count
            by_country[row.country_code or "?"][row.outcome] += row.count
        return Dashboard(
            days=names,
            by_day=by_day,
            by_channel=dict(sorted(by_channel.items())),
            by_country=dict(sorted(by_country.items(), key=lambda kv: -kv[1]["sent"])),
            otp_sent=otp["otp_sent"],
            otp_verified=otp["otp_verified"],
        )
