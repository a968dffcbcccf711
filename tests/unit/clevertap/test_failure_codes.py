"""CleverTap's 900-920 failure codes from our message states, SMPP refusals, receipts and DLT."""

from __future__ import annotations

import pytest

from switchboard.domain.messages import MessageStatus
from switchboard.integrations.clevertap.codes import failure_for


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (MessageStatus.EXPIRED, "916"),
        (MessageStatus.CANCELLED, "915"),
        (MessageStatus.UNDELIVERABLE, "914"),
        (MessageStatus.REJECTED, "903"),
        (MessageStatus.FAILED, "904"),
        (MessageStatus.UNKNOWN, "900"),
    ],
)
def test_without_a_provider_code_the_status_decides(status: MessageStatus, expected: str) -> None:
    assert failure_for(status, None).code == expected


@pytest.mark.parametrize(
    ("error_code", "expected"),
    [
        ("0x0B", "910"),  # ESME_RINVDSTADR
        ("0x0a", "906"),  # ESME_RINVSRCADR: the header
        ("0x58", "904"),  # throttled until retries ran out
        ("001", "910"),  # receipt err: unknown subscriber
        ("027", "905"),  # absent subscriber
        ("033", "912"),  # inbox full
        ("13", "903"),  # call barred
        ("601", "907"),  # DLT entity
        ("612", "919"),  # DLT telemarketer chain
        ("623", "906"),  # DLT header
        ("631", "908"),  # DLT template
        ("645", "909"),  # DLT consent / preference
    ],
)
def test_a_known_provider_code_decides_over_the_status(error_code: str, expected: str) -> None:
    assert failure_for(MessageStatus.UNDELIVERABLE, error_code).code == expected


@pytest.mark.parametrize("error_code", ["0xZZ", "0x63", "5.1.1", "999", "", "1234567"])
def test_unknown_or_malformed_codes_fall_back_to_the_status(error_code: str) -> None:
    assert failure_for(MessageStatus.EXPIRED, error_code).code == "916"


def test_a_delivered_message_has_no_failure_code() -> None:
    with pytest.raises(ValueError, match="no failure code"):
        failure_for(MessageStatus.DELIVERED, None)


def test_every_code_is_in_clevertaps_range() -> None:
    codes = {
        failure_for(status, code).code
        for status in MessageStatus
        if status is not MessageStatus.DELIVERED
        for code in (None, "0x0B", "001", "601", "625", "635", "650")
    }
    assert all(900 <= int(code) <= 920 for code in codes)
