"""SMPP 3.4 PDU codec: exact octets, round trips, tolerant responses, malformed input."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.channels.smpp.pdu import (
    BindTransceiver,
    BindTransceiverResp,
    CommandStatus,
    DataSm,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    PduEncodeError,
    PduError,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlv,
    Unbind,
    UnbindResp,
    decode,
    encode,
    find_tlv,
)

ascii_field = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E))
octet = st.integers(min_value=0, max_value=255)
sequence = st.integers(min_value=1, max_value=0x7FFFFFFF)
tlv = st.builds(Tlv, st.integers(min_value=0, max_value=0xFFFF), st.binary(max_size=40))


def header(length: int, command_id: int, status: int, seq: int) -> bytes:
    return struct.pack(">IIII", length, command_id, status, seq)


def test_enquire_link_is_a_bare_header() -> None:
    assert encode(EnquireLink(sequence_number=7)) == header(16, 0x15, 0, 7)


def test_bind_transceiver_octets_follow_the_spec() -> None:
    data = encode(BindTransceiver(sequence_number=1, system_id="esme1", password="pw"))
    body = b"esme1\x00pw\x00\x00\x34\x00\x00\x00"
    assert data == header(16 + len(body), 0x09, 0, 1) + body


def test_submit_sm_octets_follow_the_spec() -> None:
    pdu = SubmitSm(
        sequence_number=2,
        source_addr_ton=5,
        source_addr="BRAND",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="919876543210",
        registered_delivery=1,
        data_coding=8,
        short_message=b"\x04\x16",
        tlvs=(Tlv.cstring(0x1400, "12"),),
    )
    body = (
        b"\x00" + b"\x05\x00BRAND\x00" + b"\x01\x01919876543210\x00" + b"\x00\x00\x00"
        b"\x00\x00" + b"\x01\x00\x08\x00\x02\x04\x16" + b"\x14\x00\x00\x0312\x00"
    )
    assert encode(pdu) == header(16 + len(body), 0x04, 0, 2) + body
    assert decode(encode(pdu)) == pdu


@pytest.mark.parametrize("tail", [b"", b"\x00"], ids=["no body", "lone NUL"])
def test_refused_submit_sm_resp_may_come_without_a_body(tail: bytes) -> None:
    data = header(16 + len(tail), 0x80000004, 0x58, 9) + tail
    assert decode(data) == SubmitSmResp(sequence_number=9, command_status=0x58)


def test_refused_bind_resp_without_body_keeps_its_status() -> None:
    resp = decode(header(16, 0x80000009, CommandStatus.ESME_RINVPASWD, 1))
    assert isinstance(resp, BindTransceiverResp)
    assert resp.command_status == CommandStatus.ESME_RINVPASWD


def test_refused_response_is_encoded_without_body() -> None:
    assert len(encode(SubmitSmResp(sequence_number=3, command_status=0x58))) == 16


def test_unknown_command_id_is_a_typed_error_with_its_sequence() -> None:
    with pytest.raises(PduError) as caught:
        decode(header(16, 0x00000077, 0, 42))
    assert caught.value.command_status == CommandStatus.ESME_RINVCMDID
    assert caught.value.sequence_number == 42


def test_truncated_body_is_a_length_error() -> None:
    data = encode(SubmitSm(sequence_number=5, destination_addr="1", short_message=b"hello"))
    truncated = struct.pack(">I", len(data) - 3) + data[4:-3]
    with pytest.raises(PduError) as caught:
        decode(truncated)
    assert caught.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert caught.value.sequence_number == 5


def test_overrunning_tlv_is_a_tlv_length_error() -> None:
    body = b"\x04\x27\x00\x05\x02"
    with pytest.raises(PduError) as caught:
        decode(header(16 + len(body), 0x80000015, 0, 1) + body)
    assert caught.value.command_status == CommandStatus.ESME_RINVTLVLEN


@pytest.mark.parametrize("length", [0, 15, 10_000_000])
def test_impossible_command_length_is_refused(length: int) -> None:
    with pytest.raises(PduError):
        decode(header(length, 0x15, 0, 1))


def test_values_that_cannot_go_on_the_wire_fail_before_sending() -> None:
    with pytest.raises(PduEncodeError):
        encode(SubmitSm(source_addr="x" * 21))
    with pytest.raises(PduEncodeError):
        encode(SubmitSm(source_addr="Zürich"))
    with pytest.raises(PduEncodeError):
        encode(SubmitSm(short_message=b"x" * 255))


def test_tlv_helpers_read_ids_and_states() -> None:
    tlvs = (Tlv.cstring(Tag.RECEIPTED_MESSAGE_ID, "abc"), Tlv.u8(Tag.MESSAGE_STATE, 2))
    pdu = DeliverSm(tlvs=tlvs)
    assert pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) is not None
    assert find_tlv(tlvs, Tag.RECEIPTED_MESSAGE_ID).as_text() == "abc"  # type: ignore[union-attr]
    assert find_tlv(tlvs, Tag.MESSAGE_STATE).as_int() == 2  # type: ignore[union-attr]
    assert Tlv.u16(Tag.SAR_MSG_REF_NUM, 0x1234).value == b"\x12\x34"


short_messages = st.builds(
    SubmitSm,
    sequence_number=sequence,
    service_type=ascii_field.filter(lambda s: len(s) <= 5),
    source_addr_ton=octet,
    source_addr_npi=octet,
    source_addr=ascii_field.filter(lambda s: len(s) <= 20),
    dest_addr_ton=octet,
    dest_addr_npi=octet,
    destination_addr=ascii_field.filter(lambda s: len(s) <= 20),
    esm_class=octet,
    protocol_id=octet,
    priority_flag=octet,
    validity_period=st.sampled_from(["", "000000001000000R"]),
    registered_delivery=octet,
    data_coding=octet,
    short_message=st.binary(max_size=254),
    tlvs=st.lists(tlv, max_size=4).map(tuple),
)

any_pdu = st.one_of(
    short_messages,
    short_messages.map(
        lambda p: DeliverSm(
            sequence_number=p.sequence_number,
            source_addr=p.source_addr,
            esm_class=p.esm_class,
            short_message=p.short_message,
            tlvs=p.tlvs,
        )
    ),
    st.builds(
        SubmitSmResp,
        sequence_number=sequence,
        message_id=ascii_field.filter(lambda s: len(s) <= 64),
    ),
    st.builds(DeliverSmResp, sequence_number=sequence),
    st.builds(
        BindTransceiver,
        sequence_number=sequence,
        system_id=ascii_field.filter(lambda s: len(s) <= 15),
        password=ascii_field.filter(lambda s: len(s) <= 8),
    ),
    st.builds(
        BindTransceiverResp,
        sequence_number=sequence,
        system_id=ascii_field.filter(lambda s: len(s) <= 15),
    ),
    st.builds(EnquireLink, sequence_number=sequence),
    st.builds(EnquireLinkResp, sequence_number=sequence),
    st.builds(Unbind, sequence_number=sequence),
    st.builds(UnbindResp, sequence_number=sequence),
    st.builds(GenericNack, sequence_number=sequence, command_status=st.integers(0, 0xFFFF)),
    st.builds(
        DataSm,
        sequence_number=sequence,
        source_addr=ascii_field.filter(lambda s: len(s) <= 20),
        destination_addr=ascii_field.filter(lambda s: len(s) <= 20),
        data_coding=octet,
        tlvs=st.lists(tlv, max_size=3).map(tuple),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(any_pdu)
def test_every_pdu_round_trips(pdu: Pdu) -> None:
    assert decode(encode(pdu)) == pdu


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_random_octets_raise_only_pdu_error(data: bytes) -> None:
    with contextlib.suppress(PduError):
        decode(data)


@settings(max_examples=500, deadline=None)
@given(any_pdu, st.data())
def test_corrupted_pdus_raise_only_pdu_error(pdu: Pdu, data: st.DataObject) -> None:
    raw = bytearray(encode(pdu))
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(4, len(raw) - 1)) if len(raw) > 4 else 0
        raw[position] = data.draw(octet)
    cut = data.draw(st.integers(16, len(raw)))
    framed = struct.pack(">I", cut) + bytes(raw[4:cut])
    status = CommandStatus.ESME_ROK
    try:
        decode(framed)
    except PduError as exc:
        status = CommandStatus(exc.command_status)  # a known status, or ValueError fails the test
    assert status in CommandStatus
