"""When a message may go out: `scheduleTime` parsing and the promotional quiet window."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from switchboard.errors import InvalidRequestError


def parse_schedule_time(raw: str | None, now: datetime, *, max_days: int) -> datetime | None:
    """`scheduleTime` as ISO 8601 (no zone means UTC) or seconds from now; None to send now."""
    if raw is None or not raw.strip():
        return None
    value = raw.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequestError(
                f"scheduleTime '{raw}' is neither ISO 8601 nor a number of seconds"
            ) from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    else:
        if seconds < 0:
            raise InvalidRequestError("scheduleTime in seconds must not be negative")
        moment = now + timedelta(seconds=min(seconds, max_days * 86400 + 1))
    if moment > now + timedelta(days=max_days):
        raise InvalidRequestError(f"scheduleTime is more than {max_days} days ahead")
    return max(moment, now)


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def next_allowed(moment: datetime, window: str | None, timezone: str) -> datetime:
    """The first instant at or after `moment` inside the daily local window "HH:MM-HH:MM"."""
    if not window:
        return moment
    start_text, end_text = window.split("-")
    start, end = _hhmm(start_text), _hhmm(end_text)
    zone = ZoneInfo(timezone)
    local = moment.astimezone(zone)
    clock = local.time()
    inside = start <= clock < end if start < end else (clock >= start or clock < end)
    if inside:
        return moment
    opening = local.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    if opening <= local:
        opening += timedelta(days=1)
    return opening.astimezone(UTC)
