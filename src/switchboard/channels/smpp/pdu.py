"""SMPP 3.4 PDUs as typed values, and their codec (header, C-strings, bodies, TLVs).

`decode` never raises anything but PduError on malformed input; the error carries the
command_status to answer with (in a generic_nack) and the sequence_number when it was readable.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Self

HEADER_SIZE = 16
# message_payload may carry up to 64 KiB; anything bigger is a framing error, not a PDU.
MAX_PDU_SIZE = 72 * 1024
RESPONSE_BIT = 0x80000000
MAX_SEQUENCE = 0x7FFFFFFF
INTERFACE_VERSION = 0x34


class CommandId(IntEnum):
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


class CommandStatus(IntEnum):
    """The statuses Switchboard acts on; any other u32 may arrive and is kept as a plain int."""

    ESME_ROK = 0x00
    ESME_RINVMSGLEN = 0x01
    ESME_RINVCMDLEN = 0x02
    ESME_RINVCMDID = 0x03
    ESME_RINVBNDSTS = 0x04
    ESME_RALYBND = 0x05
    ESME_RSYSERR = 0x08
    ESME_RINVSRCADR = 0x0A
    ESME_RINVDSTADR = 0x0B
    ESME_RINVMSGID = 0x0C
    ESME_RBINDFAIL = 0x0D
    ESME_RINVPASWD = 0x0E
    ESME_RINVSYSID = 0x0F
    ESME_RMSGQFUL = 0x14
    ESME_RINVESMCLASS = 0x43
    ESME_RSUBMITFAIL = 0x45
    ESME_RINVSRCTON = 0x48
    ESME_RINVSRCNPI = 0x49
    ESME_RINVDSTTON = 0x50
    ESME_RINVDSTNPI = 0x51
    ESME_RTHROTTLED = 0x58
    ESME_RINVSCHED = 0x61
    ESME_RINVEXPIRY = 0x62
    ESME_RX_T_APPN = 0x64
    ESME_RINVTLVSTREAM = 0xC0
    ESME_RTLVNOTALLWD = 0xC1
    ESME_RINVTLVLEN = 0xC2
    ESME_RMISSINGTLV = 0xC3
    ESME_RINVTLVVAL = 0xC4
    ESME_RDELIVERYFAILURE = 0xFE
    ESME_RUNKNOWNERR = 0xFF


def status_name(status: int) -> str:
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"0x{status:08X}"


class Tag(IntEnum):
    USER_MESSAGE_REFERENCE = 0x0204
    SAR_MSG_REF_NUM = 0x020C
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    RECEIPTED_MESSAGE_ID = 0x001E
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    MESSAGE_STATE = 0x0427


VENDOR_TAGS = range(0x1400, 0x4000)  # SMPP 3.4 §5.3.2: vendor-specific, e.g. India DLT ids


class EsmClass:
    """Bits of esm_class (SMPP 3.4 §5.2.12)."""

    TYPE_MASK = 0x3C
    DELIVERY_RECEIPT = 0x04
    INTERMEDIATE_NOTIFICATION = 0x20
    UDHI = 0x40


class PduError(Exception):
    """Malformed input; answer it with generic_nack(command_status, sequence_number)."""

    def __init__(
        self,
        reason: str,
        *,
        command_status: int = CommandStatus.ESME_RINVCMDLEN,
        sequence_number: int = 0,
        command_id: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command_status = command_status
        self.sequence_number = sequence_number
        self.command_id = command_id


class PduEncodeError(ValueError):
    """A value that cannot go on the wire (too long, not ASCII); raised before anything is sent."""


@dataclass(frozen=True, slots=True)
class Tlv:
    tag: int
    value: bytes

    @classmethod
    def cstring(cls, tag: int, text: str) -> Tlv:
        return cls(tag, _ascii(text, "TLV") + b"\x00")

    @classmethod
    def u8(cls, tag: int, number: int) -> Tlv:
        return cls(tag, struct.pack(">B", number))

    @classmethod
    def u16(cls, tag: int, number: int) -> Tlv:
        return cls(tag, struct.pack(">H", number))

    def as_int(self) -> int | None:
        """The value as an unsigned big-endian integer of 1, 2 or 4 octets, else None."""
        if len(self.value) in (1, 2, 4):
            return int.from_bytes(self.value, "big")
        return None

    def as_text(self) -> str:
        """The value as text, without the C-string NUL; never fails."""
        return self.value.split(b"\x00", 1)[0].decode("latin-1")


def find_tlv(tlvs: Iterable[Tlv], tag: int) -> Tlv | None:
    for tlv in tlvs:  # a loop, not next(genexpr): called several times per receipt
        if tlv.tag == tag:
            return tlv
    return None


@dataclass(frozen=True, slots=True)
class Header:
    command_length: int
    command_id: int
    command_status: int
    sequence_number: int

    @classmethod
    def parse(cls, data: bytes) -> Header:
        if len(data) < HEADER_SIZE:
            raise PduError("short header")
        length, command_id, status, sequence = struct.unpack_from(">IIII", data)
        if not HEADER_SIZE <= length <= MAX_PDU_SIZE:
            raise PduError(f"command_length {length} out of range", sequence_number=sequence)
        return cls(length, command_id, status, sequence)


class _Reader:
    """A cursor over one PDU body; every read past the end raises PduError."""

    def __init__(self, data: bytes, header: Header) -> None:
        self._data = data
        self._pos = HEADER_SIZE
        self._header = header

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _fail(self, reason: str, status: int = CommandStatus.ESME_RINVCMDLEN) -> PduError:
        return PduError(
            reason,
            command_status=status,
            sequence_number=self._header.sequence_number,
            command_id=self._header.command_id,
        )

    def octets(self, count: int) -> bytes:
        if count > self.remaining:
            raise self._fail(f"body ends {count - self.remaining} octets early")
        chunk = self._data[self._pos : self._pos + count]
        self._pos += count
        return chunk

    def u8(self) -> int:
        position = self._pos
        if position >= len(self._data):
            raise self._fail("body ends 1 octets early")
        self._pos = position + 1
        return self._data[position]

    def cstring(self, max_size: int) -> str:
        end = self._data.find(b"\x00", self._pos, self._pos + max_size)
        if end < 0:
            raise self._fail(f"C-string longer than {max_size - 1} or without NUL")
        text = self._data[self._pos : end].decode("latin-1")
        self._pos = end + 1
        return text

    def tlvs(self) -> tuple[Tlv, ...]:
        found: list[Tlv] = []
        while self.remaining > 0:
            if self.remaining < 4:
                raise self._fail("truncated TLV header", CommandStatus.ESME_RINVTLVSTREAM)
            tag, length = struct.unpack_from(">HH", self._data, self._pos)
            self._pos += 4
            if length > self.remaining:
                raise self._fail(f"TLV 0x{tag:04X} overruns the PDU", CommandStatus.ESME_RINVTLVLEN)
            found.append(Tlv(tag, self.octets(length)))
        return tuple(found)


def _ascii(text: str, what: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise PduEncodeError(f"{what} must be ASCII: {text!r}") from exc


def _cstring(text: str, max_size: int, what: str) -> bytes:
    raw = _ascii(text, what)
    if len(raw) >= max_size or b"\x00" in raw:
        raise PduEncodeError(f"{what} longer than {max_size - 1} characters: {text!r}")
    return raw + b"\x00"


def _encode_tlvs(tlvs: Iterable[Tlv]) -> bytes:
    out = bytearray()
    for tlv in tlvs:
        if not 0 <= tlv.tag <= 0xFFFF or len(tlv.value) > 0xFFFF:
            raise PduEncodeError(f"TLV 0x{tlv.tag:04X} out of range")
        out += struct.pack(">HH", tlv.tag, len(tlv.value)) + tlv.value
    return bytes(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pdu:
    """Common header fields; subclasses add their mandatory body."""

    command_id: ClassVar[CommandId]
    sequence_number: int = 0
    command_status: int = 0
    tlvs: tuple[Tlv, ...] = ()

    def body(self) -> bytes:
        return b""

    @classmethod
    def parse_body(cls, reader: _Reader, header: Header) -> Self:
        return cls(
            sequence_number=header.sequence_number,
            command_status=header.command_status,
            tlvs=reader.tlvs(),
        )

    def tlv(self, tag: int) -> Tlv | None:
        return find_tlv(self.tlvs, tag)

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericNack(Pdu):
    command_id: ClassVar[CommandId] = CommandId.GENERIC_NACK


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLink(Pdu):
    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLinkResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class Unbind(Pdu):
    command_id: ClassVar[CommandId] = CommandId.UNBIND


@dataclass(frozen=True, slots=True, kw_only=True)
class UnbindResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.UNBIND_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class Bind(Pdu):
    """bind_transmitter / bind_receiver / bind_transceiver share one body (SMPP 3.4 §4.1)."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def body(self) -> bytes:
        return b"".join(
            (
                _cstring(self.system_id, 16, "system_id"),
                _cstring(self.password, 9, "password"),
                _cstring(self.system_type, 13, "system_type"),
                bytes((self.interface_version, self.addr_ton, self.addr_npi)),
                _cstring(self.address_range, 41, "address_range"),
            )
        )

    @classmethod
    def parse_body(cls, reader: _Reader, header: Header) -> Self:
        return cls(
            sequence_number=header.sequence_number,
            command_status=header.command_status,
            system_id=reader.cstring(16),
            password=reader.cstring(9),
            system_type=reader.cstring(13),
            interface_version=reader.u8(),
            addr_ton=reader.u8(),
            addr_npi=reader.u8(),
            address_range=reader.cstring(41),
            tlvs=reader.tlvs(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiver(Bind):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitter(Bind):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiver(Bind):
    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER


@dataclass(frozen=True, slots=True, kw_only=True)
class BindResp(Pdu):
    """The body (system_id) may be absent when the bind is refused."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER_RESP
    system_id: str = ""

    def body(self) -> bytes:
        return _cstring(self.system_id, 16, "system_id")

    @classmethod
    def parse_body(cls, reader: _Reader, header: Header) -> Self:
        system_id = reader.cstring(65) if reader.remaining else ""
        return cls(
            sequence_number=header.sequence_number,
            command_status=header.command_status,
            system_id=system_id,
            tlvs=reader.tlvs(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiverResp(BindResp):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitterResp(BindResp):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiverResp(BindResp):
    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class ShortMessage(Pdu):
    """submit_sm and deliver_sm share one body (SMPP 3.4 §4.4.1, §4.6.1)."""

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = field(default=b"")

    def body(self) -> bytes:
        if len(self.short_message) > 254:
            raise PduEncodeError("short_message longer than 254 octets; use message_payload")
        return b"".join(
            (
                _cstring(self.service_type, 6, "service_type"),
                bytes((self.source_addr_ton, self.source_addr_npi)),
                _cstring(self.source_addr, 21, "source_addr"),
                bytes((self.dest_addr_ton, self.dest_addr_npi)),
                _cstring(self.destination_addr, 21, "destination_addr"),
                bytes((self.esm_class, self.protocol_id, self.priority_flag)),
                _cstring(self.schedule_delivery_time, 17, "schedule_delivery_time"),
                _cstring(self.validity_period, 17, "validity_period"),
                bytes(
                    (
                        self.registered_delivery,
                        self.replace_if_present_flag,
                        self.data_coding,
                        self.sm_default_msg_id,
                        len(self.short_message),
                    )
                ),
                self.short_message,
            )
        )

    @classmethod
    def parse_body(cls, reader: _Reader, header: Header) -> Self:
        # Peers overshoot the spec's address sizes; accept up to 65 octets rather than nack.
        service_type = reader.cstring(65)
        source_ton, source_npi = reader.octets(2)
        source_addr = reader.cstring(65)
        dest_ton, dest_npi = reader.octets(2)
        destination_addr = reader.cstring(65)
        esm_class, protocol_id, priority_flag = reader.octets(3)
        schedule = reader.cstring(65)
        validity = reader.cstring(65)
        registered, replace_flag, data_coding, default_id, length = reader.octets(5)
        short_message = reader.octets(length)
        return cls(
            sequence_number=header.sequence_number,
            command_status=header.command_status,
            service_type=service_type,
            source_addr_ton=source_ton,
            source_addr_npi=source_npi,
            source_addr=source_addr,
            dest_addr_ton=dest_ton,
            dest_addr_npi=dest_npi,
            destination_addr=destination_addr,
            esm_class=esm_class,
            protocol_id=protocol_id,
            priority_flag=priority_flag,
            schedule_delivery_time=schedule,
            validity_period=validity,
            registered_delivery=registered,
            replace_if_present_flag=replace_flag,
            data_coding=data_coding,
            sm_default_msg_id=default_id,
            short_message=short_message,
            tlvs=reader.tlvs(),
        )

    @property
    def is_receipt(self) -> bool:
        kind = self.esm_class & EsmClass.TYPE_MASK
        return kind in (EsmClass.DELIVERY_RECEIPT, EsmClass.INTERMEDIATE_NOTIFICATION)


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSm(ShortMessage):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSm(ShortMessage):
    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageIdResp(Pdu):
    """A response whose body is a message_id; absent entirely when the request was refused."""

    message_id: str = ""

    def body(self) -> bytes:
        return _cstring(self.message_id, 65, "message_id")

    @classmethod
    def parse_body(cls, reader: _Reader, header: Header) -> Self:
        if reader.remaining == 0:
            return cls(sequence_number=header.sequence_number, command_status=header.command_status)
        if header.command_status != 0 and reader.remaining == 1:
            reader.octets(1)  # a lone NUL or junk octet after an error: length 17 is common
            message_id = ""
        else:
            message_id = reader.cstring(65)
        return cls(
            sequence_number=header.sequence_number,
            command_status=header.command_status,
            message_id=message_id,
            tlvs=reader.tlvs(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSmResp(MessageIdResp):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSmResp(MessageIdResp):
    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSm(Pdu):
    """data_sm (SMPP 3.4 §4.7): addresses and flags only; the text rides in message_payload."""

    command_id: ClassVar[CommandId] = CommandId.DATA_SM
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0

    def body(self) -> bytes:
        return b"".join(
            (
                _cstring(self.service_type, 6, "service_type"),
                bytes((self.source_addr_ton, self.source_addr_npi)),
                _cstring(self.source_addr, 65, "source_addr"),
                bytes((self.dest_addr_ton, self.dest_addr_npi)),
                _cstring(self.destination_addr, 65, "destination_addr"),
                bytes((self.esm_class, self.registered_delivery, self.data_coding)),
            )
        )

    @classmethod
    def parse_body(cls, reader: _Reader, header: Header) -> Self:
        service_type = reader.cstring(65)
        source_ton, source_npi = reader.u8(), reader.u8()
        source_addr = reader.cstring(65)
        dest_ton, dest_npi = reader.u8(), reader.u8()
        destination_addr = reader.cstring(65)
        esm_class, registered, data_coding = reader.u8(), reader.u8(), reader.u8()
        return cls(
            sequence_number=header.sequence_number,
            command_status=header.command_status,
            service_type=service_type,
            source_addr_ton=source_ton,
            source_addr_npi=source_npi,
            source_addr=source_addr,
            dest_addr_ton=dest_ton,
            dest_addr_npi=dest_npi,
            destination_addr=destination_addr,
            esm_class=esm_class,
            registered_delivery=registered,
            data_coding=data_coding,
            tlvs=reader.tlvs(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSmResp(MessageIdResp):
    command_id: ClassVar[CommandId] = CommandId.DATA_SM_RESP


_TYPES: dict[int, type[Pdu]] = {
    cls.command_id: cls
    for cls in (
        GenericNack,
        BindReceiver,
        BindReceiverResp,
        BindTransmitter,
        BindTransmitterResp,
        BindTransceiver,
        BindTransceiverResp,
        SubmitSm,
        SubmitSmResp,
        DeliverSm,
        DeliverSmResp,
        Unbind,
        UnbindResp,
        EnquireLink,
        EnquireLinkResp,
        DataSm,
        DataSmResp,
    )
}

_RESPONSES: dict[int, type[Pdu]] = {
    CommandId.BIND_RECEIVER: BindReceiverResp,
    CommandId.BIND_TRANSMITTER: BindTransmitterResp,
    CommandId.BIND_TRANSCEIVER: BindTransceiverResp,
    CommandId.SUBMIT_SM: SubmitSmResp,
    CommandId.DELIVER_SM: DeliverSmResp,
    CommandId.UNBIND: UnbindResp,
    CommandId.ENQUIRE_LINK: EnquireLinkResp,
    CommandId.DATA_SM: DataSmResp,
}


def response_type(request: Pdu) -> type[Pdu]:
    return _RESPONSES[request.command_id]


_HEADER = struct.Struct(">IIII")


def encode(pdu: Pdu, sequence_number: int | None = None) -> bytes:
    """The PDU on the wire, with `sequence_number` instead of the PDU's own when given.

    A refused response (status ≠ 0) goes without a body, as most SMSCs do.
    """
    sequence = pdu.sequence_number if sequence_number is None else sequence_number
    if not 0 <= sequence <= 0xFFFFFFFF:
        raise PduEncodeError(f"sequence_number {sequence} out of range")
    refused = pdu.command_status != 0 and pdu.is_response
    if refused:
        payload = b""
    elif pdu.tlvs:
        payload = pdu.body() + _encode_tlvs(pdu.tlvs)
    else:
        payload = pdu.body()
    header = _HEADER.pack(HEADER_SIZE + len(payload), pdu.command_id, pdu.command_status, sequence)
    return header + payload


def decode(data: bytes) -> Pdu:
    """One whole PDU (command_length octets) to its typed value; raises only PduError."""
    header = Header.parse(data)
    if header.command_length != len(data):
        raise PduError(
            f"command_length {header.command_length} but {len(data)} octets",
            sequence_number=header.sequence_number,
            command_id=header.command_id,
        )
    pdu_type = _TYPES.get(header.command_id)
    if pdu_type is None:
        raise PduError(
            f"unknown command_id 0x{header.command_id:08X}",
            command_status=CommandStatus.ESME_RINVCMDID,
            sequence_number=header.sequence_number,
            command_id=header.command_id,
        )
    return pdu_type.parse_body(_Reader(data, header), header)
