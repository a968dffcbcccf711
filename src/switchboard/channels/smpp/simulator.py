"""An SMSC simulator (asyncio server) with scripted outcomes, for local work and tests.

It checks bind credentials, answers submit_sm with ids (or throttling, a chosen status,
generic_nack or silence), sends delivery receipts with TLVs and Appendix B text after a
delay (optionally before the submit_sm_resp), answers enquire_link and unbind, and keeps
every PDU it received so tests can assert on them. Change `behaviour` at any time.

As SMSCs do, a receipt whose transceiver is gone goes to another bind of the account that
receives, and a deliver_sm left unanswered when its connection ends is delivered again on
another (or on the next bind).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from switchboard.channels.smpp.pdu import (
    HEADER_SIZE,
    Bind,
    BindReceiver,
    BindReceiverResp,
    BindResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CommandStatus,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    EsmClass,
    GenericNack,
    Header,
    Pdu,
    PduError,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlv,
    Unbind,
    UnbindResp,
    decode,
    encode,
)

log = logging.getLogger(__name__)

_MESSAGE_STATES = {"DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "REJECTD": 8}
_FIRST_ID = 0xA0000000  # its hex form always has a letter, its decimal form never does


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorBehaviour:
    system_id: str = "switchboard"
    password: str = "secret"  # noqa: S105 - a local simulator's default, documented
    bind_refusal_status: int = CommandStatus.ESME_RINVPASWD  # for wrong credentials
    outcomes: Mapping[str, float] = field(default_factory=lambda: {"DELIVRD": 1.0})  # weights
    receipt_delay_s: float = 0.0
    receipts: bool = True  # when the submit asked for one (registered_delivery & 1)
    receipt_tlvs: bool = True  # receipted_message_id + message_state besides the text
    receipt_before_resp: bool = False
    receipt_dates_with_seconds: bool = False  # 12-digit dates instead of 10
    resp_id_base: int = 10  # how submit_sm_resp spells the id: 10 or 16
    receipt_id_base: int = 10  # how the receipt spells it
    throttle_share: float = 0.0  # share of submit_sm answered ESME_RTHROTTLED
    submit_status: int = CommandStatus.ESME_ROK  # force a refusal for every submit_sm
    nack_submits: bool = False  # answer submit_sm with generic_nack
    silent: bool = False  # never answer submit_sm
    answer_enquire_link: bool = True
    response_delay_s: float = 0.0
    unbind_resp_delay_s: float = 0.0  # keeps reading (and delivering) meanwhile
    max_binds: int | None = None  # the account's bind limit: binds beyond it get ESME_RALYBND


@dataclass(slots=True, eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    bind: Bind | None = None
    sequence: int = 0
    unanswered: dict[int, DeliverSm] = field(default_factory=dict)  # by sequence number
    unbinding: bool = False  # its unbind is not answered yet (unbind_resp_delay_s)

    def next_sequence(self) -> int:
        self.sequence = self.sequence % 0x7FFFFFFF + 1
        return self.sequence


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str
    pdu: SubmitSm


class SmscSimulator:
    """An in-process SMSC on 127.0.0.1; port 0 picks a free port (read `port` after start)."""

    def __init__(
        self,
        behaviour: SimulatorBehaviour | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
    ) -> None:
        self.behaviour = behaviour or SimulatorBehaviour()
        self.host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random(seed)  # noqa: S311 - scripted outcomes, not secrets
        self._next_id = _FIRST_ID
        self.received: list[Pdu] = []  # every decoded PDU, in arrival order
        self.submits: list[SubmitSm] = []  # every submit_sm, including refused ones
        self.accepted: list[Accepted] = []
        self.binds: list[Bind] = []
        self.deliver_responses: list[DeliverSmResp] = []
        self.binds_refused = 0  # beyond max_binds
        self.refuse_binds = 0  # refuse the next n binds with ESME_RBINDFAIL (an SMSC's hiccup)
        self.redelivered = 0  # deliver_sm sent again after their connection ended unanswered
        self._held: list[tuple[str, DeliverSm]] = []  # (system_id, pdu) while nothing receives
        self.unbinds = 0
        self._stopping = False
        self.malformed = 0

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("simulator not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def bound_count(self) -> int:
        return sum(1 for connection in self._connections if connection.bind is not None)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self._requested_port)

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> SmscSimulator:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def drop_connections(self) -> None:
        for connection in list(self._connections):
            connection.writer.close()
        self._connections.clear()

    # -- scripted traffic ----------------------------------------------------------------

    async def deliver(self, pdu: DeliverSm, *, unbinding: bool = False) -> bool:
        """Send a deliver_sm (MO or receipt) to a bind that receives (`unbinding`: one whose
        unbind is still unanswered, so that it crosses the unbind); False if there is none."""
        for connection in list(self._connections):
            if isinstance(connection.bind, BindTransceiver | BindReceiver) and (
                connection.unbinding or not unbinding
            ):
                await self._send(connection, pdu)
                return True
        return False

    async def send_raw(self, data: bytes) -> None:
        """Write raw octets to every connection (malformed-input tests)."""
        for connection in list(self._connections):
            connection.writer.write(data)
            with contextlib.suppress(ConnectionError):
                await connection.writer.drain()

    async def enquire_link(self) -> None:
        """Send enquire_link on every bound connection (the ESME must answer it)."""
        for connection in list(self._connections):
            if connection.bind is not None:
                await self._send(connection, EnquireLink())

    async def request_unbind(self) -> None:
        for connection in list(self._connections):
            if connection.bind is not None:
                await self._send(connection, Unbind())

    # -- protocol ----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(reader, writer)
        self._connections.add(connection)
        try:
            while True:
                try:
                    head = await reader.readexactly(HEADER_SIZE)
                    header = Header.parse(head)
                    data = head + await reader.readexactly(header.command_length - HEADER_SIZE)
                except PduError as exc:
                    self.malformed += 1
                    await self._nack(connection, exc)
                    return
                try:
                    pdu = decode(data)
                except PduError as exc:
                    self.malformed += 1
                    if not (exc.command_id or 0) & 0x80000000:
                        await self._nack(connection, exc)
                    continue
                self.received.append(pdu)
                if not await self._handle(connection, pdu):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._connections.discard(connection)
            writer.close()
            self._redeliver(connection)

    def _redeliver(self, gone: _Connection) -> None:
        if gone.bind is None or not gone.unanswered or self._stopping:
            return
        pending, gone.unanswered = list(gone.unanswered.values()), {}
        self.redelivered += len(pending)
        self._held.extend((gone.bind.system_id, pdu) for pdu in pending)
        self._spawn(self._release_held())

    async def _release_held(self) -> None:
        """Send held deliver_sm to a bind of their account that receives, if one is bound."""
        held, self._held = self._held, []
        for system_id, pdu in held:
            receiver = self._receiving_bind(system_id)
            if receiver is None:
                self._held.append((system_id, pdu))
            else:
                await self._send(receiver, pdu)

    def _receiving_bind(self, system_id: str) -> _Connection | None:
        for other in self._connections:
            if (
                isinstance(other.bind, BindReceiver | BindTransceiver)
                and other.bind.system_id == system_id
                and not other.unbinding
                and not other.writer.is_closing()
            ):
                return other
        return None

    async def _handle(self, connection: _Connection, pdu: Pdu) -> bool:
        """Answer one PDU; False ends the connection."""
        behaviour = self.behaviour
        if isinstance(pdu, Bind):
            return await self._bind(connection, pdu)
        if isinstance(pdu, EnquireLink):
            if behaviour.answer_enquire_link:
                await self._send(connection, EnquireLinkResp(sequence_number=pdu.sequence_number))
        elif isinstance(pdu, Unbind):
            self.unbinds += 1
            if behaviour.unbind_resp_delay_s:
                connection.unbinding = True
                self._spawn(self._answer_unbind_later(connection, pdu))
                return True
            await self._send(connection, UnbindResp(sequence_number=pdu.sequence_number))
            return False
        elif isinstance(pdu, SubmitSm):
            self.submits.append(pdu)
            self._spawn(self._submit(connection, pdu))
        elif isinstance(pdu, DeliverSmResp):
            self.deliver_responses.append(pdu)
            connection.unanswered.pop(pdu.sequence_number, None)
        elif isinstance(pdu, UnbindResp):
            return False
        elif not pdu.is_response and not isinstance(pdu, GenericNack):
            await self._send(
                connection,
                GenericNack(
                    sequence_number=pdu.sequence_number,
                    command_status=CommandStatus.ESME_RINVCMDID,
                ),
            )
        return True

    async def _answer_unbind_later(self, connection: _Connection, pdu: Unbind) -> None:
        await asyncio.sleep(self.behaviour.unbind_resp_delay_s)
        await self._send(connection, UnbindResp(sequence_number=pdu.sequence_number))
        connection.writer.close()  # _serve then ends, and redelivers what was left unanswered

    async def _bind(self, connection: _Connection, pdu: Bind) -> bool:
        self.binds.append(pdu)
        behaviour = self.behaviour
        response_type: type[BindResp] = (
            BindTransceiverResp
            if isinstance(pdu, BindTransceiver)
            else BindReceiverResp
            if isinstance(pdu, BindReceiver)
            else BindTransmitterResp
        )
        if connection.bind is not None:
            status: int = CommandStatus.ESME_RALYBND
        elif pdu.system_id != behaviour.system_id or pdu.password != behaviour.password:
            status = behaviour.bind_refusal_status
        elif self.refuse_binds > 0:
            self.refuse_binds -= 1
            status = CommandStatus.ESME_RBINDFAIL
        elif behaviour.max_binds is not None and self.bound_count >= behaviour.max_binds:
            status = CommandStatus.ESME_RALYBND
            self.binds_refused += 1
        else:
            status = CommandStatus.ESME_ROK
        await self._send(
            connection,
            response_type(
                sequence_number=pdu.sequence_number, command_status=status, system_id="SIMSMSC"
            ),
        )
        if status == CommandStatus.ESME_ROK:
            connection.bind = pdu
            if self._held and not isinstance(pdu, BindTransmitter):
                self._spawn(self._release_held())
            return True
        return connection.bind is not None  # a refused first bind ends the connection

    async def _submit(self, connection: _Connection, pdu: SubmitSm) -> None:
        behaviour = self.behaviour
        if behaviour.silent:
            return
        if behaviour.response_delay_s:
            await asyncio.sleep(behaviour.response_delay_s)
        if behaviour.nack_submits:
            await self._send(
                connection,
                GenericNack(
                    sequence_number=pdu.sequence_number,
                    command_status=CommandStatus.ESME_RINVCMDLEN,
                ),
            )
            return
        status = behaviour.submit_status
        if connection.bind is None or isinstance(connection.bind, BindReceiver):
            status = CommandStatus.ESME_RINVBNDSTS
        elif status == 0 and self._rng.random() < behaviour.throttle_share:
            status = CommandStatus.ESME_RTHROTTLED
        if status != CommandStatus.ESME_ROK:
            await self._send(
                connection, SubmitSmResp(sequence_number=pdu.sequence_number, command_status=status)
            )
            return
        number = self._next_id
        self._next_id += 1
        message_id = _spell(number, behaviour.resp_id_base)
        self.accepted.append(Accepted(message_id, pdu))
        response = SubmitSmResp(sequence_number=pdu.sequence_number, message_id=message_id)
        wants_receipt = behaviour.receipts and pdu.registered_delivery & 0x03 in (1, 2)
        if wants_receipt and behaviour.receipt_before_resp:
            await self._send(self._receiver_for(connection), self._receipt(pdu, number))
            await self._send(connection, response)
            return
        await self._send(connection, response)
        if wants_receipt:
            if behaviour.receipt_delay_s:
                await asyncio.sleep(behaviour.receipt_delay_s)
            await self._send(self._receiver_for(connection), self._receipt(pdu, number))

    def _receiver_for(self, connection: _Connection) -> _Connection:
        """Receipts go back on the transceiver while it is bound, else on a bind of the same
        account that receives (the submitting one when there is none)."""
        bind = connection.bind
        if bind is None or (isinstance(bind, BindTransceiver) and connection in self._connections):
            return connection
        return self._receiving_bind(bind.system_id) or connection

    def _receipt(self, submit: SubmitSm, number: int) -> DeliverSm:
        behaviour = self.behaviour
        stats = list(behaviour.outcomes)
        stat = self._rng.choices(stats, weights=[behaviour.outcomes[s] for s in stats])[0]
        receipt_id = _spell(number, behaviour.receipt_id_base)
        date_format = "%y%m%d%H%M%S" if behaviour.receipt_dates_with_seconds else "%y%m%d%H%M"
        stamp = datetime.now(UTC).strftime(date_format)
        error = "000" if stat == "DELIVRD" else "001"
        text = (
            f"id:{receipt_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
            f"submit date:{stamp} done date:{stamp} stat:{stat} err:{error} text:"
        )
        tlvs: tuple[Tlv, ...] = ()
        if behaviour.receipt_tlvs:
            tlvs = (
                Tlv.cstring(Tag.RECEIPTED_MESSAGE_ID, receipt_id),
                Tlv.u8(Tag.MESSAGE_STATE, _MESSAGE_STATES.get(stat, 7)),
            )
        return DeliverSm(
            source_addr_ton=submit.dest_addr_ton,
            source_addr_npi=submit.dest_addr_npi,
            source_addr=submit.destination_addr,
            dest_addr_ton=submit.source_addr_ton,
            dest_addr_npi=submit.source_addr_npi,
            destination_addr=submit.source_addr,
            esm_class=EsmClass.DELIVERY_RECEIPT,
            short_message=text.encode("ascii"),
            tlvs=tlvs,
        )

    async def _send(self, connection: _Connection, pdu: Pdu) -> None:
        if not pdu.is_response and not isinstance(pdu, GenericNack):
            pdu = replace(pdu, sequence_number=connection.next_sequence())
        if connection.writer.is_closing():
            return
        if isinstance(pdu, DeliverSm):
            connection.unanswered[pdu.sequence_number] = pdu
        connection.writer.write(encode(pdu))
        with contextlib.suppress(ConnectionError):
            await connection.writer.drain()

    async def _nack(self, connection: _Connection, exc: PduError) -> None:
        await self._send(
            connection,
            GenericNack(sequence_number=exc.sequence_number, command_status=exc.command_status),
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _spell(number: int, base: int) -> str:
    return f"{number:X}" if base == 16 else str(number)


async def serve_simulator(
    behaviour: SimulatorBehaviour,
    host: str = "127.0.0.1",
    port: int = 2775,
    *,
    on_ready: Callable[[str, int], None] | None = None,
    seed: int | None = None,
) -> None:
    """Run a simulator until cancelled."""
    simulator = SmscSimulator(behaviour, host=host, port=port, seed=seed)
    await simulator.start()
    try:
        if on_ready is not None:
            on_ready(host, simulator.port)
        log.info("SMSC simulator listening on %s:%d", host, simulator.port)
        await asyncio.Event().wait()
    finally:
        await simulator.stop()


def run_simulator(
    host: str = "127.0.0.1",
    port: int = 2775,
    *,
    system_id: str = "switchboard",
    password: str = "secret",  # noqa: S107 - a local simulator's default
    receipt_delay_s: float = 1.0,
    delivered: float = 1.0,
    undelivered: float = 0.0,
    expired: float = 0.0,
    rejected: float = 0.0,
    throttle_share: float = 0.0,
    silent: bool = False,
    receipt_before_resp: bool = False,
    hex_ids: bool = False,
    dates_with_seconds: bool = False,
    seed: int | None = None,
    on_ready: Callable[[str, int], None] | None = None,
) -> None:
    """Blocking entry point for `switchboard smsc-sim`: serve until Ctrl-C.

    Receipt states are drawn with the given weights. `hex_ids` spells ids in hex in
    submit_sm_resp and in decimal in receipts (the mismatch real SMSCs produce).
    """
    outcomes = {
        stat: weight
        for stat, weight in (
            ("DELIVRD", delivered),
            ("UNDELIV", undelivered),
            ("EXPIRED", expired),
            ("REJECTD", rejected),
        )
        if weight > 0
    } or {"DELIVRD": 1.0}
    behaviour = SimulatorBehaviour(
        system_id=system_id,
        password=password,
        outcomes=outcomes,
        receipt_delay_s=receipt_delay_s,
        throttle_share=throttle_share,
        silent=silent,
        receipt_before_resp=receipt_before_resp,
        resp_id_base=16 if hex_ids else 10,
        receipt_id_base=10,
        receipt_dates_with_seconds=dates_with_seconds,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_simulator(behaviour, host, port, on_ready=on_ready, seed=seed))
