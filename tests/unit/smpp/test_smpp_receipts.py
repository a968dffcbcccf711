"""Delivery receipt parsing: TLVs first, tolerant text, dates, states and id normalising."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchboard.channels.base import ReportState
from switchboard.channels.smpp.pdu import DeliverSm, EsmClass, Tag, Tlv
from switchboard.channels.smpp.receipts import (
    normalise_provider_id,
    parse_receipt,
    parse_receipt_date,
)

STANDARD = (
    "id:1234567890 sub:001 dlvrd:001 submit date:2611251230 done date:2611251231 "
    "stat:DELIVRD err:000 text:Your code is"
)


def receipt_pdu(*tlvs: Tlv) -> DeliverSm:
    return DeliverSm(esm_class=EsmClass.DELIVERY_RECEIPT, tlvs=tlvs)


@pytest.mark.parametrize(
    ("text", "provider_id", "state", "error"),
    [
        (STANDARD, "1234567890", ReportState.DELIVRD, None),
        ("ID:abc SUB:001 DLVRD:000 STAT:UNDELIV ERR:034 TEXT:x", "abc", ReportState.UNDELIV, "034"),
        ("id:1 Stat:expired err:0", "1", ReportState.EXPIRED, None),
        ("id:2 stat:REJECTD err:E99", "2", ReportState.REJECTD, "E99"),
        ("id:3 stat:ACCEPTD", "3", ReportState.ACCEPTD, None),
        ("id:4 stat:ENROUTE", "4", ReportState.ENROUTE, None),
        ("id:5 stat:DELETED err:000", "5", ReportState.DELETED, None),
        ("id:6 stat:UNKNOWN", "6", ReportState.UNKNOWN, None),
        ("id:7 stat:DELIVERED", "7", ReportState.DELIVRD, None),
        ("id:8", "8", ReportState.UNKNOWN, None),  # no stat at all
        ("id:9 stat:WHATEVER err:1", "9", ReportState.UNKNOWN, "1"),
        (
            "id:10 stat:DELIVRD err:000 text:hi ### trailing garbage \x00\x01",
            "10",
            ReportState.DELIVRD,
            None,
        ),
        ("id:11,stat:UNDELIV,err:5", "11", ReportState.UNDELIV, "5"),
    ],
)
def test_text_receipts_are_read_tolerantly(
    text: str, provider_id: str, state: ReportState, error: str | None
) -> None:
    receipt = parse_receipt(receipt_pdu(), text)
    assert receipt is not None
    assert (receipt.provider_id, receipt.state, receipt.error_code) == (provider_id, state, error)


def test_dates_with_and_without_seconds_are_read_as_utc() -> None:
    receipt = parse_receipt(
        receipt_pdu(), "id:1 submit date:261125123045 done date:2611251231 stat:DELIVRD"
    )
    assert receipt is not None
    assert receipt.submitted_at == datetime(2026, 11, 25, 12, 30, 45, tzinfo=UTC)
    assert receipt.done_at == datetime(2026, 11, 25, 12, 31, tzinfo=UTC)


@pytest.mark.parametrize("value", ["", "26112512", "2613251231", "abcdefghij", None])
def test_unreadable_dates_become_none(value: str | None) -> None:
    assert parse_receipt_date(value) is None


def test_tlvs_win_over_the_text() -> None:
    pdu = receipt_pdu(
        Tlv.cstring(Tag.RECEIPTED_MESSAGE_ID, "ABC123"),
        Tlv.u8(Tag.MESSAGE_STATE, 5),
        Tlv(Tag.NETWORK_ERROR_CODE, b"\x03\x00\x22"),
    )
    receipt = parse_receipt(pdu, "id:999 stat:DELIVRD")
    assert receipt is not None
    assert receipt.provider_id == "ABC123"
    assert receipt.state is ReportState.UNDELIV
    assert receipt.raw["network_error_code"] == "3:34"


def test_tlvs_alone_make_a_receipt_without_text() -> None:
    pdu = receipt_pdu(Tlv.cstring(Tag.RECEIPTED_MESSAGE_ID, "x1"), Tlv.u8(Tag.MESSAGE_STATE, 2))
    receipt = parse_receipt(pdu, "")
    assert receipt is not None
    assert (receipt.provider_id, receipt.state) == ("x1", ReportState.DELIVRD)


def test_an_unknown_message_state_falls_back_to_the_text() -> None:
    pdu = receipt_pdu(Tlv.cstring(Tag.RECEIPTED_MESSAGE_ID, "x1"), Tlv.u8(Tag.MESSAGE_STATE, 99))
    receipt = parse_receipt(pdu, "stat:EXPIRED")
    assert receipt is not None
    assert receipt.state is ReportState.EXPIRED


def test_a_receipt_without_any_id_is_not_a_receipt() -> None:
    assert parse_receipt(receipt_pdu(), "stat:DELIVRD err:000") is None
    assert parse_receipt(receipt_pdu(), "\x00garbage") is None


@pytest.mark.parametrize(
    ("resp_id", "receipt_id"),
    [
        ("A0000000", "2684354560"),  # hex in submit_sm_resp, decimal in the receipt
        ("2684354560", "a0000000"),  # and the reverse, lower case
        ("0001234", "1234"),  # zero padding
        (" 42 ", "42"),
        ("msg-7f3e-11", "msg-7f3e-11"),  # not a number: kept as given
    ],
)
def test_hex_and_decimal_ids_normalise_to_the_same_value(resp_id: str, receipt_id: str) -> None:
    assert normalise_provider_id(resp_id) == normalise_provider_id(receipt_id)


def test_a_known_base_reads_all_digit_hex_ids() -> None:
    assert normalise_provider_id("1000", 16) == normalise_provider_id("4096", 10) == "4096"
    assert normalise_provider_id("not-hex", 16) == "not-hex"
