"""A lean SMSC peer for benchmarks: answers binds and submit_sm, sends a DELIVRD receipt for each,
and timestamps what it saw so the harness can measure request → submit_sm → receipt stored.

    python -m bench.smsc --port 2775 [--record-prefix 9197] [--receipt-delay-s 0]

It uses Switchboard's PDU codec but not `SmscSimulator`, which keeps every PDU (a 1,000,000
message drain would hold them all) and spawns a task per submit. Every 0.5 s it prints a JSON
progress line on stdout; on stdin it reads `dump PATH` (write the recorded timings as JSON and
answer `{"dumped": PATH}`); it exits at end of stdin, so it cannot outlive the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import struct
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from bench.loop import run_loop
from switchboard.channels.smpp.pdu import (
    HEADER_SIZE,
    BindReceiver,
    BindReceiverResp,
    BindResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitterResp,
    CommandId,
    CommandStatus,
    DeliverSm,
    EnquireLinkResp,
    EsmClass,
    Header,
    PduError,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlv,
    UnbindResp,
    decode,
    encode,
)

PROGRESS_EVERY_S = 0.5
_FIRST_ID = 0x10000000


@dataclass(slots=True)
class Counters:
    binds: int = 0
    submits: int = 0
    receipts_sent: int = 0
    receipts_acked: int = 0
    first_submit: float = 0.0
    last_submit: float = 0.0
    last_ack: float = 0.0
    # destination → [submit_sm seen, receipt's deliver_sm_resp seen] for recorded destinations
    timings: dict[str, list[float]] = field(default_factory=dict)


class SmscConnection(asyncio.Protocol):
    def __init__(self, peer: SmscPeer) -> None:
        self._peer = peer
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._sequence = 0
        self._bound = False
        self._receipts: dict[int, str] = {}  # deliver_sm sequence → destination

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        out: list[bytes] = []
        while len(self._buffer) >= HEADER_SIZE:
            (length,) = struct.unpack_from(">I", self._buffer)
            if len(self._buffer) < length:
                break
            frame = bytes(self._buffer[:length])
            del self._buffer[:length]
            self._handle(frame, out)
        if out and self._transport is not None:
            self._transport.write(b"".join(out))

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    def _handle(self, frame: bytes, out: list[bytes]) -> None:
        peer = self._peer
        now = time.monotonic()
        header = Header.parse(frame)
        if header.command_id == CommandId.DELIVER_SM_RESP:
            destination = self._receipts.pop(header.sequence_number, None)
            peer.counters.receipts_acked += 1
            peer.counters.last_ack = now
            if destination is not None and destination in peer.counters.timings:
                peer.counters.timings[destination].append(now)
            return
        if header.command_id == CommandId.SUBMIT_SM and self._bound:
            fields = _submit_fields(frame)
            if fields is not None:
                self._submit_fast(header.sequence_number, fields, now, out)
                return
        try:
            pdu = decode(frame)
        except PduError:
            return
        if isinstance(pdu, SubmitSm):
            self._submit(pdu, now, out)
        elif isinstance(pdu, BindTransceiver | BindReceiver) or pdu.command_id in (
            CommandId.BIND_TRANSMITTER,
        ):
            response: type[BindResp] = (
                BindTransceiverResp
                if isinstance(pdu, BindTransceiver)
                else BindReceiverResp
                if isinstance(pdu, BindReceiver)
                else BindTransmitterResp
            )
            self._bound = True
            peer.counters.binds += 1
            out.append(encode(response(sequence_number=pdu.sequence_number, system_id="BENCH")))
        elif pdu.command_id == CommandId.ENQUIRE_LINK:
            out.append(encode(EnquireLinkResp(sequence_number=pdu.sequence_number)))
        elif pdu.command_id == CommandId.UNBIND:
            out.append(encode(UnbindResp(sequence_number=pdu.sequence_number)))

    def _submit(self, pdu: SubmitSm, now: float, out: list[bytes]) -> None:
        peer = self._peer
        counters = peer.counters
        if not self._bound:
            out.append(
                encode(
                    SubmitSmResp(
                        sequence_number=pdu.sequence_number,
                        command_status=CommandStatus.ESME_RINVBNDSTS,
                    )
                )
            )
            return
        counters.submits += 1
        if not counters.first_submit:
            counters.first_submit = now
        counters.last_submit = now
        destination = pdu.destination_addr.lstrip("+")
        if peer.records(destination):
            counters.timings[destination] = [now]
        number = peer.next_id()
        message_id = str(number)
        out.append(encode(SubmitSmResp(sequence_number=pdu.sequence_number, message_id=message_id)))
        if pdu.registered_delivery & 0x03 not in (1, 2):
            return
        receipt = _receipt(pdu, message_id, self._next_sequence())
        self._receipts[receipt.sequence_number] = destination
        counters.receipts_sent += 1
        if peer.receipt_delay_s:
            asyncio.get_running_loop().call_later(
                peer.receipt_delay_s, self._write, encode(receipt)
            )
        else:
            out.append(encode(receipt))

    def _submit_fast(
        self, sequence: int, fields: tuple[bytes, bytes, str, int], now: float, out: list[bytes]
    ) -> None:
        """submit_sm → resp and receipt without decoding or encoding whole PDUs: the peer must
        cost a fraction of the server it measures (they share the machine)."""
        source_part, destination_part, destination, registered = fields
        peer = self._peer
        counters = peer.counters
        counters.submits += 1
        if not counters.first_submit:
            counters.first_submit = now
        counters.last_submit = now
        if peer.records(destination):
            counters.timings[destination] = [now]
        message_id = str(peer.next_id()).encode()
        out.append(
            _HEADER.pack(HEADER_SIZE + len(message_id) + 1, CommandId.SUBMIT_SM_RESP, 0, sequence)
            + message_id
            + b"\x00"
        )
        if registered & 0x03 not in (1, 2):
            return
        receipt_sequence = self._next_sequence()
        self._receipts[receipt_sequence] = destination
        counters.receipts_sent += 1
        stamp = peer.stamp()
        text = (
            b"id:" + message_id + b" sub:001 dlvrd:001 submit date:" + stamp + b" done date:"
            + stamp + b" stat:DELIVRD err:000 text:"
        )  # fmt: skip
        # source of the receipt = destination of the submit and the other way round
        body = b"".join(
            (
                b"\x00", destination_part, source_part,
                bytes((EsmClass.DELIVERY_RECEIPT, 0, 0)), b"\x00\x00",
                bytes((0, 0, 0, 0, len(text))), text,
                _TLV.pack(Tag.RECEIPTED_MESSAGE_ID, len(message_id) + 1), message_id, b"\x00",
                _TLV.pack(Tag.MESSAGE_STATE, 1), b"\x02",
            )
        )  # fmt: skip
        receipt = _HEADER.pack(HEADER_SIZE + len(body), CommandId.DELIVER_SM, 0, receipt_sequence)
        if peer.receipt_delay_s:
            asyncio.get_running_loop().call_later(peer.receipt_delay_s, self._write, receipt + body)
        else:
            out.append(receipt + body)

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)


_HEADER = struct.Struct(">IIII")
_TLV = struct.Struct(">HH")


def _submit_fields(frame: bytes) -> tuple[bytes, bytes, str, int] | None:
    """(source TON, NPI and address with its NUL, the same for the destination, the destination
    digits, registered_delivery) of a submit_sm; None if it does not parse."""
    try:
        source_start = frame.index(b"\x00", HEADER_SIZE) + 1  # after service_type
        source_end = frame.index(b"\x00", source_start + 2) + 1
        destination_end = frame.index(b"\x00", source_end + 2) + 1
        position = destination_end + 3  # esm_class, protocol_id, priority_flag
        position = frame.index(b"\x00", position) + 1  # schedule_delivery_time
        position = frame.index(b"\x00", position) + 1  # validity_period
        registered = frame[position]
    except (ValueError, IndexError):
        return None
    destination = frame[source_end + 2 : destination_end - 1].decode("latin-1").lstrip("+")
    return (
        frame[source_start:source_end],
        frame[source_end:destination_end],
        destination,
        registered,
    )


def _receipt(submit: SubmitSm, message_id: str, sequence: int) -> DeliverSm:
    stamp = datetime.now(UTC).strftime("%y%m%d%H%M")
    text = (
        f"id:{message_id} sub:001 dlvrd:001 submit date:{stamp} done date:{stamp} "
        "stat:DELIVRD err:000 text:"
    )
    return DeliverSm(
        sequence_number=sequence,
        source_addr_ton=submit.dest_addr_ton,
        source_addr_npi=submit.dest_addr_npi,
        source_addr=submit.destination_addr,
        dest_addr_ton=submit.source_addr_ton,
        dest_addr_npi=submit.source_addr_npi,
        destination_addr=submit.source_addr,
        esm_class=EsmClass.DELIVERY_RECEIPT,
        short_message=text.encode("ascii"),
        tlvs=(Tlv.cstring(Tag.RECEIPTED_MESSAGE_ID, message_id), Tlv.u8(Tag.MESSAGE_STATE, 2)),
    )


class SmscPeer:
    def __init__(self, record_prefixes: tuple[str, ...], receipt_delay_s: float) -> None:
        self.counters = Counters()
        self.receipt_delay_s = receipt_delay_s
        self._prefixes = record_prefixes
        self._next_id = _FIRST_ID
        self._stamp_second = 0
        self._stamp = b""

    def records(self, destination: str) -> bool:
        return bool(self._prefixes) and destination.startswith(self._prefixes)

    def stamp(self) -> bytes:
        """Now as a receipt date (YYMMDDhhmm), computed once a second."""
        second = int(time.time())
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = datetime.now(UTC).strftime("%y%m%d%H%M").encode()
        return self._stamp

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def progress(self) -> dict[str, float | int]:
        c = self.counters
        return {
            "t": time.monotonic(),
            "binds": c.binds,
            "submits": c.submits,
            "receipts_sent": c.receipts_sent,
            "receipts_acked": c.receipts_acked,
            "first_submit": c.first_submit,
            "last_submit": c.last_submit,
            "last_ack": c.last_ack,
        }


async def _report(peer: SmscPeer) -> None:
    while True:
        print(json.dumps(peer.progress()), flush=True)
        await asyncio.sleep(PROGRESS_EVERY_S)


async def _commands(peer: SmscPeer) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        command, _, argument = line.strip().partition(" ")
        if command == "dump":
            text = json.dumps(peer.counters.timings)  # on the loop: the dict keeps changing
            await loop.run_in_executor(None, Path(argument).write_text, text)
            print(json.dumps({"dumped": argument}), flush=True)


async def serve(port: int, record_prefixes: tuple[str, ...], receipt_delay_s: float) -> None:
    peer = SmscPeer(record_prefixes, receipt_delay_s)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SmscConnection(peer), "127.0.0.1", port)
    print(json.dumps({"listening": port}), flush=True)
    reporter = asyncio.create_task(_report(peer))
    try:
        await _commands(peer)
    finally:
        reporter.cancel()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record-prefix", action="append", default=[])
    parser.add_argument("--receipt-delay-s", type=float, default=0.0)
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        run_loop(serve(arguments.port, tuple(arguments.record_prefix), arguments.receipt_delay_s))


if __name__ == "__main__":
    main()
