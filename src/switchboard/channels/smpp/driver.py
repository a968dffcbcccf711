"""SmppDriver: the ChannelDriver for SMS over SMPP 3.4 binds, with its options and status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from switchboard.channels.base import (
    DeliveryReport,
    InboundMessage,
    OutboundMessage,
    ReportSink,
    SendError,
    SendErrorKind,
    SendResult,
)
from switchboard.channels.smpp.pdu import (
    CommandStatus,
    EsmClass,
    PduEncodeError,
    ShortMessage,
    SubmitSm,
    Tag,
    Tlv,
    status_name,
)
from switchboard.channels.smpp.receipts import normalise_provider_id, parse_receipt
from switchboard.channels.smpp.session import (
    THROTTLING_STATUSES,
    BindMode,
    EsmeSession,
    NotBoundError,
    SessionConfig,
    SessionStatus,
    SubmitError,
    SubmitRefusedError,
    TokenBucket,
)
from switchboard.clock import Clock, SystemClock
from switchboard.domain.encoding import (
    GSM7_BASIC,
    GSM7_ESCAPE,
    GSM7_EXTENSION,
    MULTI_PART_UNITS,
    Encoding,
    analyse,
    decode_gsm7,
    decode_ucs2,
    encode,
    split,
)
from switchboard.domain.messages import Channel, MessageType

log = logging.getLogger(__name__)

DATA_CODING_GSM7 = 0x00
DATA_CODING_LATIN1 = 0x03
DATA_CODING_UCS2 = 0x08
MAX_PARTS = 255

# Refusals that a retry will not change (integrations.md §1.6); anything else not listed as
# transient below is treated as permanent too, with its code kept for the operator.
TRANSIENT_STATUSES = frozenset(
    {
        CommandStatus.ESME_RINVBNDSTS,
        CommandStatus.ESME_RSYSERR,
        CommandStatus.ESME_RMSGQFUL,
        CommandStatus.ESME_RSUBMITFAIL,
        CommandStatus.ESME_RTHROTTLED,
        CommandStatus.ESME_RX_T_APPN,
        CommandStatus.ESME_RDELIVERYFAILURE,
        CommandStatus.ESME_RUNKNOWNERR,
    }
)


class SmppOptions(BaseModel):
    """One SMPP connector's settings (timers in seconds; defaults follow Kannel and Jasmin)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int = Field(default=2775, ge=1, le=65535)
    system_id: str = Field(min_length=1, max_length=15)
    password: SecretStr = Field(max_length=8)
    system_type: str = Field(default="", max_length=12)
    service_type: str = Field(default="", max_length=5)
    window: int = Field(default=10, ge=1, le=1000)
    tps: float = Field(default=100.0, gt=0)
    binds: int = Field(default=1, ge=1, le=32)
    bind_mode: Literal["transceiver", "tx_rx"] = "transceiver"
    enquire_link_s: float = Field(default=30.0, gt=0)
    response_timeout_s: float = Field(default=60.0, gt=0)
    reconnect_initial_s: float = Field(default=10.0, ge=0)
    reconnect_max_s: float = Field(default=300.0, ge=0)
    throttle_retries: int = Field(default=5, ge=0, le=100)
    throttle_pause_s: float = Field(default=1.0, ge=0)
    throttle_pause_max_s: float = Field(default=30.0, ge=0)
    close_grace_s: float = Field(default=5.0, ge=0)
    data_coding: Literal["gsm7", "latin1"] = "gsm7"  # for GSM-alphabet texts; others go UCS-2
    long_message: Literal["udh", "sar", "payload"] = "udh"
    default_sender: str | None = None
    source_ton: int | None = Field(default=None, ge=0, le=255)  # None: from the sender's form
    source_npi: int | None = Field(default=None, ge=0, le=255)
    registered_delivery: int = Field(default=1, ge=0, le=255)
    dlt_entity_tag: int = Field(default=0x1400, ge=0x1400, le=0x3FFF)
    dlt_template_tag: int = Field(default=0x1401, ge=0x1400, le=0x3FFF)
    dlt_tlv_nul_terminated: bool = True
    submit_id_base: Literal[10, 16] | None = None  # None: guess per id (see normalise_provider_id)
    receipt_id_base: Literal[10, 16] | None = None
    deliver_failure_status: int = Field(default=CommandStatus.ESME_RX_T_APPN, ge=0)
    mo_reassembly_s: float = Field(default=300.0, gt=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class SmppStatus:
    """For health and metrics: one entry per bind, plus the connector's counters.

    `bind_share` is this worker's share of the connector (1/n of n live workers) and
    `bind_slots` the binds it keeps for that share (at least one; reached in the background);
    `binds` also lists retiring sessions while they finish and unbind."""

    connector: str
    available: bool
    tps: float
    binds: tuple[SessionStatus, ...]
    counters: Mapping[str, int] = field(default_factory=dict)
    bind_share: float = 1.0
    bind_slots: int = 1


def relative_validity(seconds: int) -> str:
    """SMPP relative time `YYMMDDhhmmss000R` (SMPP 3.4 §7.1.1.2)."""
    days, rest = divmod(max(1, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"0000{min(days, 99):02d}{hours:02d}{minutes:02d}{secs:02d}000R"


def source_address(sender: str) -> tuple[int, int, str]:
    """(TON, NPI, address): an alphanumeric sender is 5/0, a number international 1/1."""
    digits = sender[1:] if sender.startswith("+") else sender
    if digits.isdigit() and digits.isascii():
        return 1, 1, digits
    return 5, 0, sender


# Every GSM-7 character to its unpacked octets (ESC + code for the extension table), and every
# other ASCII character to a non-ASCII one, so that encoding the result as ASCII fails for
# any character outside the alphabet: a C-level str.translate instead of a loop per character.
_GSM7_OCTETS = str.maketrans(
    {
        **{chr(code): "\uffff" for code in range(128)},
        **{char: chr(code) for code, char in enumerate(GSM7_BASIC) if code != GSM7_ESCAPE},
        **{char: chr(GSM7_ESCAPE) + chr(code) for char, code in GSM7_EXTENSION.items()},
    }
)


def gsm7_octets(text: str) -> bytes:
    """GSM-7 unpacked, one septet per octet (as `domain.encoding.encode`, without its loop)."""
    try:
        return text.translate(_GSM7_OCTETS).encode("ascii")
    except UnicodeEncodeError:
        return encode(text, Encoding.GSM7)  # raises ValueError naming the character


def decode_text(data: bytes, data_coding: int) -> str:
    """Text of an MO message by its data_coding; never fails."""
    coding = data_coding & 0x0F if data_coding & 0xC0 == 0 else data_coding
    if coding == DATA_CODING_UCS2:
        return decode_ucs2(data)
    if coding == DATA_CODING_GSM7:
        return decode_gsm7(data)
    return data.decode("latin-1")


@dataclass(slots=True, eq=False)
class _BindSlot:
    """One of the connector's `binds`: a transceiver, or a transmitter with its receiver."""

    number: int
    sessions: tuple[EsmeSession, ...]
    sends: int = 0  # sends that picked this slot and have not finished all their parts
    drained: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class _PendingMo:
    first_seen: float
    total: int
    parts: dict[int, bytes] = field(default_factory=dict)


class SmppDriver:
    """SMS over one SMPP account: `binds` transceivers (or transmitter/receiver pairs),
    divided among the live workers (`set_share`)."""

    channels = frozenset({Channel.SMS})

    def __init__(
        self,
        name: str,
        options: SmppOptions,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()  # noqa: S311 - references and jitter, not secrets
        self._sink: ReportSink | None = None
        self._bucket = TokenBucket(options.tps)
        self._slots: list[_BindSlot] = []  # held: their sessions take sends
        self._retiring: list[_BindSlot] = []  # surplus after a smaller share, until unbound
        self._sessions: list[EsmeSession] = []  # the held slots' sessions
        self._slot_of: dict[EsmeSession, _BindSlot] = {}
        self._share = 1.0
        self._bind_target = options.binds
        self._reshaped = asyncio.Event()
        self._reshaper: asyncio.Task[None] | None = None
        self._closing = False
        self._sends_in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._turn = 0
        self._reference = self._rng.randrange(0x10000)
        self._mo_parts: OrderedDict[tuple[str, str, int, int], _PendingMo] = OrderedDict()
        self.counters: Counter[str] = Counter()

    # -- ChannelDriver -----------------------------------------------------------------

    async def start(self, sink: ReportSink) -> None:
        """Open this worker's binds in the background; returns at once."""
        if self._reshaper is not None:
            return
        self._sink = sink
        while len(self._slots) < self._bind_target:
            await self._open_slot()
        self._reshaper = asyncio.create_task(self._reshape_binds(), name=f"smpp-{self.name}")

    async def close(self) -> None:
        """Refuse new sends, let started ones finish all their parts (bounded), then unbind."""
        self._closing = True
        self._reshaped.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.options.close_grace_s)
        if self._reshaper is not None:
            await self._reshaper  # a retirement under way ends first (bounded by its grace)
        await asyncio.gather(*(session.close() for session in self._sessions))

    def is_available(self) -> bool:
        if self._closing:
            return False
        for session in self._sessions:  # noqa: SIM110 - once per message: no generator
            if session.can_send and session.is_bound():
                return True
        return False

    async def wait_available(self, timeout_s: float) -> bool:
        """Wait (bounded) until a bind can send; for start-up checks and tests."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.is_available():
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(0.02, left))
        return True

    async def send(self, message: OutboundMessage) -> SendResult:
        """Submit every part of an SMS on one bind; see SendErrorKind for how failures map."""
        validity = self._validity(message)
        pdus, segments = self._build(message, validity)
        session = self._pick_session()
        slot = self._slot_of[session]
        slot.sends += 1
        slot.drained.clear()
        self._sends_in_flight += 1
        self._idle.clear()
        try:
            # OTPs overtake bulk submits waiting for the window (an OTP-typed campaign too).
            urgent = message.message_type is MessageType.OTP
            return await self._submit_parts(session, pdus, segments, urgent)
        finally:
            slot.sends -= 1
            if not slot.sends:
                slot.drained.set()
            self._sends_in_flight -= 1
            if not self._sends_in_flight:
                self._idle.set()

    async def _submit_parts(
        self, session: EsmeSession, pdus: list[SubmitSm], segments: int, urgent: bool = False
    ) -> SendResult:
        accepted: list[str] = []
        for pdu in pdus:
            try:
                response = await session.submit(pdu, urgent=urgent)
            except NotBoundError as exc:
                self.counters["send_transient"] += 1
                raise SendError(
                    SendErrorKind.TRANSIENT, f"not bound: {exc}", partial_ids=tuple(accepted)
                ) from exc
            except SubmitRefusedError as exc:
                raise self._refused(exc, tuple(accepted)) from exc
            except SubmitError as exc:
                self.counters["send_ambiguous"] += 1
                raise SendError(
                    SendErrorKind.AMBIGUOUS, str(exc), partial_ids=tuple(accepted)
                ) from exc
            accepted.append(normalise_provider_id(response.message_id, self.options.submit_id_base))
        self.counters["sent"] += 1
        self.counters["parts_sent"] += len(pdus)
        return SendResult(provider_ids=tuple(accepted), segments=segments)

    def set_share(self, fraction: float) -> None:
        """Send at `fraction` of the connector's TPS and hold `floor(binds × fraction)` of its
        binds, at least one: the connector's other workers hold the rest (worker/shares.py
        divides them among the live workers). Binds open or retire in the background; the
        same share again changes nothing, and quick changes converge to the last one."""
        share = max(0.0, min(1.0, fraction))
        if share == self._share:
            return
        self._share = share
        self._bucket.set_ceiling(self.options.tps * share or 1e-3)
        binds = self.options.binds
        # 1e-9: 3 × (1/3) must count as one bind, not 0.999…
        if share > 0 and binds * share < 1 - 1e-9:
            log.warning(
                "smpp %s: binds = %d cannot be divided among %d workers: each keeps one, "
                "%d in all, above the connector's limit",
                self.name,
                binds,
                round(1 / share),
                round(1 / share),
            )
        target = max(1, math.floor(binds * share + 1e-9))
        if target != self._bind_target:
            self._bind_target = target
            self._reshaped.set()

    def status(self) -> SmppStatus:
        totals: Counter[str] = Counter(self.counters)
        sessions = [s for slot in (*self._slots, *self._retiring) for s in slot.sessions]
        for session in sessions:
            totals.update(session.counters)
        return SmppStatus(
            connector=self.name,
            available=self.is_available(),
            tps=self._bucket.rate,
            binds=tuple(session.status() for session in sessions),
            counters=dict(totals),
            bind_share=self._share,
            bind_slots=self._bind_target,
        )

    # -- bind slots --------------------------------------------------------------------

    async def _open_slot(self) -> None:
        modes = (
            [BindMode.TRANSCEIVER]
            if self.options.bind_mode == "transceiver"
            else [BindMode.TRANSMITTER, BindMode.RECEIVER]
        )
        # Retirements end before slots open: the lowest number no held slot has is free.
        held = {slot.number for slot in self._slots}
        number = min(set(range(1, len(held) + 2)) - held)
        sessions = tuple(
            EsmeSession(
                self._session_config(mode),
                on_deliver=self._on_deliver,
                bucket=self._bucket,
                name=f"{self.name}#{number}-{mode.value}",
                rng=self._rng,
            )
            for mode in modes
        )
        slot = _BindSlot(number, sessions)
        slot.drained.set()
        self._slots.append(slot)
        self._slots.sort(key=lambda held: held.number)
        self._index_sessions()
        for session in sessions:
            await session.start()

    async def _retire_slots(self, slots: list[_BindSlot]) -> None:
        """Take `slots` out of the rotation at once, then unbind each once its sends ended."""
        for slot in slots:
            self._slots.remove(slot)
        self._retiring.extend(slots)
        self._index_sessions()
        log.info("smpp %s: retiring %d binds, keeping %d", self.name, len(slots), len(self._slots))
        await asyncio.gather(*(self._retire(slot) for slot in slots))

    async def _retire(self, slot: _BindSlot) -> None:
        try:
            # A started send finishes every part on its bind (no part resent on another);
            # the session's close then waits for its window and receipts, and unbinds.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.drained.wait(), self.options.close_grace_s)
            await asyncio.gather(*(session.close() for session in slot.sessions))
            self.counters["binds_retired"] += 1
        finally:
            self._retiring.remove(slot)

    async def _reshape_binds(self) -> None:
        """Open or retire slots until this worker holds its target; runs until close."""
        while not self._closing:
            await self._reshaped.wait()
            self._reshaped.clear()
            while not self._closing and len(self._slots) != self._bind_target:
                try:
                    if len(self._slots) > self._bind_target:
                        await self._retire_slots(self._surplus())
                    else:
                        await self._open_slot()
                except Exception:  # a bug must not freeze the bind count; retry shortly
                    log.exception("smpp %s: changing the bind count failed", self.name)
                    await asyncio.sleep(1.0)

    def _surplus(self) -> list[_BindSlot]:
        """The slots to retire: unbound ones first (a bound one can send now), then the last."""
        ranked = sorted(
            self._slots,
            key=lambda slot: (all(s.is_bound() for s in slot.sessions), -slot.number),
        )
        return ranked[: len(self._slots) - self._bind_target]

    def _index_sessions(self) -> None:
        self._sessions = [session for slot in self._slots for session in slot.sessions]
        self._slot_of = {session: slot for slot in self._slots for session in slot.sessions}

    # -- sending -----------------------------------------------------------------------

    def _session_config(self, mode: BindMode) -> SessionConfig:
        options = self.options
        return SessionConfig(
            host=options.host,
            port=options.port,
            system_id=options.system_id,
            password=options.password.get_secret_value(),
            system_type=options.system_type,
            mode=mode,
            window=options.window,
            enquire_link_s=options.enquire_link_s,
            response_timeout_s=options.response_timeout_s,
            reconnect_initial_s=options.reconnect_initial_s,
            reconnect_max_s=options.reconnect_max_s,
            throttle_retries=options.throttle_retries,
            throttle_pause_s=options.throttle_pause_s,
            throttle_pause_max_s=options.throttle_pause_max_s,
            close_grace_s=options.close_grace_s,
            deliver_failure_status=options.deliver_failure_status,
        )

    def _pick_session(self) -> EsmeSession:
        ready = [s for s in self._sessions if s.can_send and s.is_bound()]
        if self._closing or not ready:
            self.counters["send_transient"] += 1
            raise SendError(SendErrorKind.TRANSIENT, f"connector {self.name} has no bound session")
        self._turn += 1
        # Most free window first; the rotating offset spreads ties across binds.
        ordered = ready[self._turn % len(ready) :] + ready[: self._turn % len(ready)]
        return max(ordered, key=lambda session: session.free_window)

    def _validity(self, message: OutboundMessage) -> str:
        if message.expires_at is None:
            return ""
        remaining = (message.expires_at - self._clock.now()).total_seconds()
        if remaining < 1:
            self.counters["send_expired"] += 1
            raise SendError(SendErrorKind.PERMANENT, "validity ended before submit")
        return relative_validity(int(remaining))

    def _addresses(self, message: OutboundMessage) -> tuple[int, int, str, str]:
        """(source TON, source NPI, source_addr, destination_addr) for a message."""
        destination = message.destination.removeprefix("+")
        if not (destination.isdigit() and destination.isascii() and len(destination) <= 20):
            raise SendError(SendErrorKind.PERMANENT, "destination is not an MSISDN")
        sender = message.sender or self.options.default_sender or ""
        ton, npi, source = source_address(sender) if sender else (0, 0, "")
        if ton == 5 and len(sender) > 11:
            raise SendError(SendErrorKind.PERMANENT, "alphanumeric sender longer than 11")
        if self.options.source_ton is not None:
            ton = self.options.source_ton
        if self.options.source_npi is not None:
            npi = self.options.source_npi
        return ton, npi, source, destination

    def _dlt_tlvs(self, message: OutboundMessage) -> tuple[Tlv, ...]:
        tlvs: list[Tlv] = []
        for tag, value in (
            (self.options.dlt_entity_tag, message.dlt_entity_id),
            (self.options.dlt_template_tag, message.dlt_template_id),
        ):
            if value:
                raw = value.encode("ascii", errors="replace")
                tlvs.append(Tlv(tag, raw + b"\x00" if self.options.dlt_tlv_nul_terminated else raw))
        return tuple(tlvs)

    def _encoder(self, text: str, encoding: Encoding) -> tuple[int, bytes]:
        if encoding is Encoding.UCS2:
            return DATA_CODING_UCS2, encode(text, Encoding.UCS2)
        if self.options.data_coding == "latin1":
            try:
                return DATA_CODING_LATIN1, text.encode("latin-1")
            except UnicodeEncodeError:
                pass  # €, Greek capitals …: GSM-7 can carry them, Latin-1 cannot
        return DATA_CODING_GSM7, gsm7_octets(text)

    def _build(self, message: OutboundMessage, validity: str) -> tuple[list[SubmitSm], int]:
        """The submit_sm PDUs for a message, in order, and the segment count billed."""
        info = analyse(message.text)
        source_ton, source_npi, source, destination = self._addresses(message)
        fields: dict[str, Any] = {
            "service_type": self.options.service_type,
            "source_addr_ton": source_ton,
            "source_addr_npi": source_npi,
            "source_addr": source,
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": destination,
            "validity_period": validity,
            "registered_delivery": self.options.registered_delivery,
            "tlvs": self._dlt_tlvs(message),
        }
        mode = self.options.long_message
        try:
            if info.segments == 1 or mode == "payload":
                coding, payload = self._encoder(message.text, info.encoding)
                if info.segments == 1 and len(payload) <= 254:
                    # the common case: one PDU, built once (dataclasses.replace costs as much)
                    return [SubmitSm(**fields, data_coding=coding, short_message=payload)], 1
            base = SubmitSm(**fields)
            if info.segments == 1 or mode == "payload":
                tlvs = (*base.tlvs, Tlv(Tag.MESSAGE_PAYLOAD, payload))
                return [replace(base, data_coding=coding, tlvs=tlvs)], info.segments
            parts = split(message.text, info.encoding, MULTI_PART_UNITS[info.encoding])
            if len(parts) > MAX_PARTS:
                raise SendError(SendErrorKind.PERMANENT, f"text needs {len(parts)} parts (max 255)")
            self._reference = (self._reference + 1) % 0x10000
            total = len(parts)
            pdus: list[SubmitSm] = []
            for number, part in enumerate(parts, start=1):
                coding, chunk = self._encoder(part, info.encoding)
                if mode == "udh":
                    udh = bytes((0x05, 0x00, 0x03, self._reference & 0xFF, total, number))
                    pdu = replace(
                        base,
                        esm_class=base.esm_class | EsmClass.UDHI,
                        data_coding=coding,
                        short_message=udh + chunk,
                    )
                else:
                    sar = (
                        Tlv.u16(Tag.SAR_MSG_REF_NUM, self._reference),
                        Tlv.u8(Tag.SAR_TOTAL_SEGMENTS, total),
                        Tlv.u8(Tag.SAR_SEGMENT_SEQNUM, number),
                    )
                    pdu = replace(
                        base, data_coding=coding, short_message=chunk, tlvs=(*base.tlvs, *sar)
                    )
                pdus.append(pdu)
            return pdus, total
        except (PduEncodeError, ValueError) as exc:
            if isinstance(exc, SendError):
                raise
            raise SendError(SendErrorKind.PERMANENT, f"cannot encode: {exc}") from exc

    def _refused(self, exc: SubmitRefusedError, accepted: tuple[str, ...]) -> SendError:
        code = f"0x{exc.status:02X}"
        if exc.status in TRANSIENT_STATUSES:
            self.counters["send_transient"] += 1
            throttled = exc.status in THROTTLING_STATUSES
            return SendError(
                SendErrorKind.TRANSIENT,
                f"SMSC refused: {status_name(exc.status)}"
                + (f" after {exc.throttled_attempts} retries" if throttled else ""),
                provider_code=code,
                retry_after_s=self.options.throttle_pause_max_s if throttled else None,
                partial_ids=accepted,
            )
        self.counters["send_permanent"] += 1
        what = "generic_nack" if exc.nacked else "refused"
        return SendError(
            SendErrorKind.PERMANENT,
            f"SMSC {what}: {status_name(exc.status)}",
            provider_code=code,
            partial_ids=accepted,
        )

    # -- receiving ---------------------------------------------------------------------

    async def _on_deliver(self, pdu: ShortMessage) -> int:
        """Hand a receipt or MO to the sink; the returned status answers the deliver_sm."""
        sink = self._sink
        if sink is None:
            return self.options.deliver_failure_status
        payload_tlv = pdu.tlv(Tag.MESSAGE_PAYLOAD)
        body = payload_tlv.value if payload_tlv is not None else pdu.short_message
        if pdu.is_receipt or pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) is not None:
            coding = pdu.data_coding & 0x0F
            text = decode_ucs2(body) if coding == DATA_CODING_UCS2 else body.decode("latin-1")
            receipt = parse_receipt(pdu, text)
            if receipt is None:
                # Unmatchable, but answered with 0: a refusal would only make the SMSC resend it.
                self.counters["receipts_unparsed"] += 1
                log.warning("smpp %s: receipt without an id: %r", self.name, text[:120])
                return CommandStatus.ESME_ROK
            await sink.on_report(
                DeliveryReport(
                    connector=self.name,
                    provider_id=normalise_provider_id(
                        receipt.provider_id, self.options.receipt_id_base
                    ),
                    state=receipt.state,
                    error_code=receipt.error_code,
                    submitted_at=receipt.submitted_at,
                    done_at=receipt.done_at,
                    raw=receipt.raw,
                )
            )
            self.counters["receipts"] += 1
            return CommandStatus.ESME_ROK
        mo_text = self._reassemble(pdu, body)
        if mo_text is not None:
            await sink.on_inbound(
                InboundMessage(
                    connector=self.name,
                    channel=Channel.SMS,
                    source=_msisdn(pdu.source_addr, pdu.source_addr_ton),
                    destination=_msisdn(pdu.destination_addr, pdu.dest_addr_ton),
                    text=mo_text,
                    received_at=self._now(),
                )
            )
            self.counters["inbound"] += 1
        return CommandStatus.ESME_ROK

    def _now(self) -> datetime:
        return self._clock.now()

    def _reassemble(self, pdu: ShortMessage, body: bytes) -> str | None:
        """The whole MO text once every part is in; None while parts are missing."""
        concat = _concatenation(pdu, body)
        if concat is None:
            return decode_text(body, pdu.data_coding)
        reference, total, number, chunk = concat
        loop_time = asyncio.get_running_loop().time()
        for key in [
            k
            for k, v in self._mo_parts.items()
            if loop_time - v.first_seen > self.options.mo_reassembly_s
        ]:
            del self._mo_parts[key]
            self.counters["inbound_parts_expired"] += 1
        key = (pdu.source_addr, pdu.destination_addr, reference, total)
        pending = self._mo_parts.setdefault(key, _PendingMo(first_seen=loop_time, total=total))
        pending.parts[number] = chunk
        self.counters["inbound_parts"] += 1
        while len(self._mo_parts) > 1024:
            self._mo_parts.popitem(last=False)
        if len(pending.parts) < total:
            return None
        del self._mo_parts[key]
        joined = b"".join(pending.parts[n] for n in sorted(pending.parts))
        return decode_text(joined, pdu.data_coding)


def _msisdn(address: str, ton: int) -> str:
    if ton == 1 and address.isdigit():
        return f"+{address}"
    return address


def _concatenation(pdu: ShortMessage, body: bytes) -> tuple[int, int, int, bytes] | None:
    """(reference, total, part number, text octets) from a UDH or SAR TLVs; None if single."""
    if pdu.esm_class & EsmClass.UDHI and body:
        header_length = body[0]
        header, text = body[1 : 1 + header_length], body[1 + header_length :]
        position = 0
        while position + 2 <= len(header):
            iei, length = header[position], header[position + 1]
            value = header[position + 2 : position + 2 + length]
            if iei == 0x00 and len(value) == 3 and value[1] >= 1 and 1 <= value[2] <= value[1]:
                return value[0], value[1], value[2], text
            if iei == 0x08 and len(value) == 4 and value[2] >= 1 and 1 <= value[3] <= value[2]:
                return int.from_bytes(value[:2], "big"), value[2], value[3], text
            position += 2 + length
        return None
    ref = pdu.tlv(Tag.SAR_MSG_REF_NUM)
    total = pdu.tlv(Tag.SAR_TOTAL_SEGMENTS)
    number = pdu.tlv(Tag.SAR_SEGMENT_SEQNUM)
    if ref is None or total is None or number is None:
        return None
    ref_value, total_value, number_value = ref.as_int(), total.as_int(), number.as_int()
    if ref_value is None or not total_value or not number_value or number_value > total_value:
        return None
    return ref_value, total_value, number_value, body
