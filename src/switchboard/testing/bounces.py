"""Bounce e-mails as receiving MTAs write them (RFC 3464 delivery status notifications)."""

from __future__ import annotations


def delivery_status_notification(
    original_headers: bytes, *, status: str = "5.1.1", recipient: str = "user@example.test"
) -> bytes:
    """A `multipart/report` DSN saying the mail with `original_headers` failed for `recipient`."""
    return (
        b"From: MAILER-DAEMON@example.test\r\nTo: bounces@switchboard.test\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.test\r\n\r\n"
        + f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n".encode()
        + b"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
        b"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n" + original_headers + b"\r\n"
        b"--B--\r\n"
    )
