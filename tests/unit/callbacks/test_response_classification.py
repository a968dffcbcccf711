"""What each receiver answer means: delivered, retried (when) or endpoint disabled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from switchboard.domain.callbacks import Action, classify_response, parse_retry_after

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status_code", "retry_after", "action", "delay"),
    [
        (200, None, Action.DELIVERED, None),
        (201, None, Action.DELIVERED, None),
        (204, "60", Action.DELIVERED, None),
        (299, None, Action.DELIVERED, None),
        (301, "60", Action.RETRY, None),
        (302, None, Action.RETRY, None),
        (307, None, Action.RETRY, None),
        (308, None, Action.RETRY, None),
        (400, "60", Action.RETRY, None),
        (401, None, Action.RETRY, None),
        (404, None, Action.RETRY, None),
        (410, "60", Action.DISABLE_ENDPOINT, None),
        (413, None, Action.RETRY, None),
        (429, None, Action.RETRY, None),
        (429, "120", Action.RETRY, timedelta(seconds=120)),
        (500, None, Action.RETRY, None),
        (502, "30", Action.RETRY, timedelta(seconds=30)),
        (503, "Wed, 25 Nov 2026 12:10:00 GMT", Action.RETRY, timedelta(minutes=10)),
        (504, "999999", Action.RETRY, timedelta(hours=24)),
        (100, None, Action.RETRY, None),
        (600, "60", Action.RETRY, None),
        (None, None, Action.RETRY, None),
        (None, "60", Action.RETRY, None),
    ],
)
def test_status_matrix(
    status_code: int | None, retry_after: str | None, action: Action, delay: timedelta | None
) -> None:
    outcome = classify_response(status_code, retry_after, now=NOW)

    assert outcome.action is action
    assert outcome.retry_after == delay


def test_redirect_reason_says_it_was_not_followed() -> None:
    assert "not followed" in classify_response(302).reason


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("  45 ", timedelta(seconds=45)),
        ("86400", timedelta(hours=24)),
        ("86401", timedelta(hours=24)),
        ("Wed, 25 Nov 2026 11:00:00 GMT", None),
        ("Fri, 27 Nov 2026 12:00:00 GMT", timedelta(hours=24)),
    ],
)
def test_retry_after_parsing(header: str, expected: timedelta | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_an_http_date_without_a_clock_is_ignored() -> None:
    assert parse_retry_after("Wed, 25 Nov 2026 12:10:00 GMT") is None
