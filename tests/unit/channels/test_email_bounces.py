"""DSN bounce parsing: which bounces are ours, and how they become UNDELIV reports."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchboard.channels.base import DeliveryReport, ReportState
from switchboard.channels.email import EmailDriver, EmailOptions

OUR_ID = "<01J8Z5N7K2QW3E4R5T6Y7U8I9O@switchboard.test>"


def driver() -> EmailDriver:
    options = EmailOptions(host="127.0.0.1", from_address="Switchboard <no-reply@switchboard.test>")
    return EmailDriver("mail-main", options)


def dsn(
    *,
    action: str = "failed",
    status: str = "5.1.1",
    returned: bytes = b"Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: " + OUR_ID.encode(),
    per_message: bytes = b"",
) -> bytes:
    """A Postfix-style RFC 3464 report."""
    return (
        b"Date: Fri, 01 May 2026 10:00:07 +0000\r\n"
        b"From: MAILER-DAEMON@mx.example.test (Mail Delivery System)\r\n"
        b"To: no-reply@switchboard.test\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="XYZ"\r\n'
        b"\r\n"
        b"--XYZ\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
        b"I'm sorry to have to inform you that your message could not be delivered.\r\n"
        b"--XYZ\r\n"
        b"Content-Type: message/delivery-status\r\n"
        b"\r\n"
        b"Reporting-MTA: dns; mx.example.test\r\n"
        b"Arrival-Date: Fri, 01 May 2026 10:00:05 +0000\r\n" + per_message + b"\r\n"
        b"Final-Recipient: rfc822; user@example.test\r\n"
        b"Original-Recipient: rfc822;user@example.test\r\n"
        b"Action: " + action.encode() + b"\r\n"
        b"Status: " + status.encode() + b"\r\n"
        b"Remote-MTA: dns; mx2.example.test\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 <user@example.test>: User unknown\r\n"
        b"Last-Attempt-Date: Fri, 01 May 2026 10:00:06 +0000\r\n"
        b"\r\n"
        b"--XYZ\r\n" + returned + b"\r\n"
        b"--XYZ--\r\n"
    )


def test_a_failed_dsn_quoting_our_headers_is_undeliverable() -> None:
    report = driver().parse_bounce(dsn())

    assert report == DeliveryReport(
        connector="mail-main",
        provider_id=OUR_ID,
        state=ReportState.UNDELIV,
        error_code="5.1.1",
        done_at=datetime(2026, 5, 1, 10, 0, 6, tzinfo=UTC),
        raw={
            "final_recipient": "rfc822; user@example.test",
            "diagnostic_code": "smtp; 550 5.1.1 <user@example.test>: User unknown",
            "remote_mta": "dns; mx2.example.test",
        },
    )


def test_a_returned_full_message_with_a_rewritten_message_id_is_found_by_our_header() -> None:
    returned = (
        b"Content-Type: message/rfc822\r\n\r\n"
        b"Message-ID: <rewritten-by-relay@relay.example.test>\r\n"
        b"X-Switchboard-Id: 01J8Z5N7K2QW3E4R5T6Y7U8I9O\r\n"
        b"Subject: Your verification code\r\n\r\n"
        b"482913 is your code\r\n"
    )

    report = driver().parse_bounce(dsn(returned=returned))

    assert report is not None
    assert report.provider_id == OUR_ID


def test_an_original_message_id_field_is_enough() -> None:
    returned = b"Content-Type: text/plain\r\n\r\n(no original attached)"
    per_message = b"Original-Message-ID: " + OUR_ID.encode() + b"\r\n"

    report = driver().parse_bounce(dsn(returned=returned, per_message=per_message))

    assert report is not None
    assert report.provider_id == OUR_ID


@pytest.mark.parametrize("action", ["delayed", "delivered", "relayed", "expanded"])
def test_reports_that_are_not_failures_are_ignored(action: str) -> None:
    assert driver().parse_bounce(dsn(action=action, status="4.4.7")) is None


def test_a_bounce_of_someone_else_s_mail_is_ignored() -> None:
    returned = b"Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: <abc@other.example.test>\r\n"

    assert driver().parse_bounce(dsn(returned=returned)) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"From: someone@example.test\r\nSubject: Re: your code\r\n\r\nThanks!\r\n",
        b"",
        b"\x00\xff garbage",
    ],
)
def test_mail_that_is_not_a_dsn_is_ignored(raw: bytes) -> None:
    assert driver().parse_bounce(raw) is None
