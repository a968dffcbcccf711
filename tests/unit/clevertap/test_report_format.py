"""CleverTap's grouped callback body, and what its 200/400 answers mean for each record."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from switchboard.domain.callbacks import Action
from switchboard.domain.messages import MessageStatus
from switchboard.errors import InvalidRequestError
from switchboard.integrations.clevertap.reports import CleverTapReportFormat, status_report
from switchboard.integrations.clevertap.service import resolve_number
from switchboard.testing.clevertap_peer import check_record

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _stored(status: MessageStatus, mid: str, error_code: str | None = None) -> bytes:
    return json.dumps(status_report(status, mid, AT, error_code)).encode("ascii")


def test_reports_are_grouped_by_event_in_order_and_keep_the_mid_verbatim() -> None:
    mid = "9999999999.1200000000.1654002362.20220531.0.wzrk_default.-1.é"
    payloads = [
        _stored(MessageStatus.DELIVERED, mid),
        _stored(MessageStatus.EXPIRED, "b"),
        _stored(MessageStatus.DELIVERED, "c"),
    ]
    body = json.loads(CleverTapReportFormat().encode(payloads))
    assert body == [
        {"event": "delivered", "data": [
            {"ts": 1795608000, "meta": mid, "description": "Delivered to handset"},
            {"ts": 1795608000, "meta": "c", "description": "Delivered to handset"},
        ]},
        {"event": "failed", "data": [
            {"ts": 1795608000, "meta": "b", "code": "916", "description": "Expired"},
        ]},
    ]  # fmt: skip
    for group in body:
        for record in group["data"]:
            assert check_record(group["event"], record) is None


def test_a_400_refuses_only_the_records_clevertap_echoes_back() -> None:
    payloads = [_stored(MessageStatus.DELIVERED, "a"), _stored(MessageStatus.FAILED, "b")]
    answer = {
        "status": "fail", "processed": 1,
        "unprocessed": [{"record": {"ts": 1795608000, "meta": "b"}, "error": "code missing"}],
    }  # fmt: skip
    outcomes = CleverTapReportFormat().outcomes(400, json.dumps(answer).encode(), payloads)
    assert outcomes is not None
    assert [o.action for o in outcomes] == [Action.DELIVERED, Action.REFUSED]
    assert "code missing" in outcomes[1].reason


def test_a_400_naming_no_record_refuses_the_whole_post() -> None:
    payloads = [_stored(MessageStatus.DELIVERED, "a")]
    outcomes = CleverTapReportFormat().outcomes(400, b"bad request", payloads)
    assert outcomes is not None
    assert [o.action for o in outcomes] == [Action.REFUSED]


@pytest.mark.parametrize("status_code", [None, 500, 503, 429, 302])
def test_server_errors_and_timeouts_leave_the_batch_to_the_retry_schedule(
    status_code: int | None,
) -> None:
    payloads = [_stored(MessageStatus.DELIVERED, "a")]
    assert CleverTapReportFormat().outcomes(status_code, b"", payloads) is None


@pytest.mark.parametrize(
    ("rendered", "expected"),
    [
        ("+919876543210", ("91", "9876543210")),
        ("919876543210", ("91", "9876543210")),
        ("00919876543210", ("91", "9876543210")),
        ("9876543210", ("91", "9876543210")),
        ("09876543210", ("91", "9876543210")),
        ("+14155550123", ("1", "4155550123")),
        ("14155550123", ("1", "4155550123")),
        ("98765-43210", ("91", "9876543210")),
    ],
)
def test_to_is_read_as_clevertap_renders_it(rendered: str, expected: tuple[str, str]) -> None:
    assert resolve_number(rendered, "91") == expected


@pytest.mark.parametrize("rendered", ["12", "+", "abc", "$$To", "+9100000"])
def test_an_unusable_to_is_refused(rendered: str) -> None:
    with pytest.raises(InvalidRequestError, match="mobileNumber"):
        resolve_number(rendered, "91")
