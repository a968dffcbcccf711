"""SmppDriver and EsmeSession against the built-in SMSC simulator over loopback TCP."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from switchboard.channels.base import ReportState, SendError, SendErrorKind
from switchboard.channels.smpp.pdu import (
    CommandStatus,
    DeliverSm,
    EnquireLinkResp,
    EsmClass,
    GenericNack,
    Tag,
    Tlv,
)
from switchboard.channels.smpp.session import SessionState
from switchboard.channels.smpp.simulator import SimulatorBehaviour, SmscSimulator, serve_simulator
from switchboard.domain.encoding import Encoding, encode
from switchboard.testing.faultproxy import FaultProxy

from .peers import RecordingSink, fast_options, running_driver, sms, wait_until


async def test_bound_driver_submits_and_the_receipt_reaches_the_sink(
    smsc_simulator: SmscSimulator,
) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, resp_id_base=16)
    sink = RecordingSink()
    async with running_driver(fast_options(smsc_simulator.port), sink) as driver:
        result = await driver.send(sms("Your code is 123456"))
        assert await wait_until(lambda: len(sink.reports) == 1)
    assert result.segments == 1
    submit = smsc_simulator.accepted[0].pdu
    assert (submit.source_addr_ton, submit.source_addr_npi, submit.source_addr) == (5, 0, "BRAND")
    assert (submit.dest_addr_ton, submit.dest_addr_npi) == (1, 1)
    assert submit.destination_addr == "919876543210"
    assert submit.registered_delivery == 1
    assert submit.data_coding == 0x00
    assert submit.short_message == b"Your code is 123456"
    report = sink.reports[0]
    # submit_sm_resp spelled the id in hex, the receipt in decimal: both normalise alike.
    assert smsc_simulator.accepted[0].message_id.startswith("A")
    assert report.provider_id == result.provider_ids[0]
    assert (report.connector, report.state) == ("smsc", ReportState.DELIVRD)


async def test_wrong_password_is_visible_and_stops_after_three_binds(
    smsc_simulator: SmscSimulator,
) -> None:
    sink = RecordingSink()
    options = fast_options(smsc_simulator.port, password="wrong")
    async with running_driver(options, sink, bound=False) as driver:
        assert await wait_until(
            lambda: driver.status().binds[0].state is SessionState.AUTH_FAILED, 3.0
        )
        await asyncio.sleep(0.3)  # several backoff periods: no fourth try
        status = driver.status().binds[0]
        assert not driver.is_available()
    assert len(smsc_simulator.binds) == 3
    assert status.last_bind_status == CommandStatus.ESME_RINVPASWD
    assert status.auth_failures == 3
    assert "ESME_RINVPASWD" in (status.last_error or "")


async def test_generic_bind_failure_keeps_retrying_with_its_status(
    smsc_simulator: SmscSimulator,
) -> None:
    smsc_simulator.behaviour = replace(
        smsc_simulator.behaviour, bind_refusal_status=CommandStatus.ESME_RBINDFAIL
    )
    options = fast_options(smsc_simulator.port, password="wrong")
    async with running_driver(options, RecordingSink(), bound=False) as driver:
        assert await wait_until(lambda: len(smsc_simulator.binds) >= 5, 3.0)
        status = driver.status().binds[0]
    assert status.state is not SessionState.AUTH_FAILED
    assert status.last_bind_status == CommandStatus.ESME_RBINDFAIL


async def test_window_caps_outstanding_submits(smsc_simulator: SmscSimulator) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, response_delay_s=0.4)
    async with running_driver(
        fast_options(smsc_simulator.port, window=3), RecordingSink()
    ) as driver:
        sends = [asyncio.create_task(driver.send(sms(f"m{i}"))) for i in range(7)]
        await asyncio.sleep(0.2)
        assert len(smsc_simulator.submits) == 3
        assert driver.status().binds[0].outstanding == 3
        results = await asyncio.wait_for(asyncio.gather(*sends), 5.0)
    assert len({r.provider_ids[0] for r in results}) == 7


async def test_unanswered_enquire_link_drops_and_rebinds(smsc_simulator: SmscSimulator) -> None:
    options = fast_options(smsc_simulator.port, enquire_link_s=0.2, response_timeout_s=0.3)
    async with running_driver(options, RecordingSink()) as driver:
        smsc_simulator.behaviour = replace(smsc_simulator.behaviour, answer_enquire_link=False)
        assert await wait_until(
            lambda: driver.status().counters.get("enquire_link_timeouts", 0) >= 1
        )
        smsc_simulator.behaviour = replace(smsc_simulator.behaviour, answer_enquire_link=True)
        assert await wait_until(lambda: driver.status().counters.get("binds", 0) >= 2, 3.0)
        assert await driver.wait_available(2.0)
        await driver.send(sms("after reconnect"))
    assert smsc_simulator.accepted[-1].pdu.short_message == b"after reconnect"


async def test_throttled_submits_are_retried_without_loss_or_reordering(
    smsc_simulator: SmscSimulator,
) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, throttle_share=0.5)
    options = fast_options(smsc_simulator.port, throttle_retries=30)
    texts = [f"message {i}" for i in range(20)]
    async with running_driver(options, RecordingSink()) as driver:
        for text in texts:
            await driver.send(sms(text))
        throttled = driver.status().counters["throttled"]
    accepted = [a.pdu.short_message.decode() for a in smsc_simulator.accepted]
    assert accepted == texts
    assert throttled > 0
    assert len(smsc_simulator.submits) == len(texts) + throttled


async def test_concurrent_throttled_submits_each_arrive_exactly_once(
    smsc_simulator: SmscSimulator,
) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, throttle_share=0.5)
    options = fast_options(smsc_simulator.port, throttle_retries=30, window=5)
    texts = [f"c{i}" for i in range(25)]
    async with running_driver(options, RecordingSink()) as driver:
        results = await asyncio.wait_for(
            asyncio.gather(*(driver.send(sms(t)) for t in texts)), 10.0
        )
    accepted = sorted(a.pdu.short_message.decode() for a in smsc_simulator.accepted)
    assert accepted == sorted(texts)
    assert len({r.provider_ids[0] for r in results}) == len(texts)


async def test_throttling_beyond_the_retries_is_transient(smsc_simulator: SmscSimulator) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, throttle_share=1.0)
    options = fast_options(smsc_simulator.port, throttle_retries=2)
    async with running_driver(options, RecordingSink()) as driver:
        with pytest.raises(SendError) as caught:
            await driver.send(sms("never"))
    assert caught.value.kind is SendErrorKind.TRANSIENT
    assert caught.value.provider_code == "0x58"
    assert len(smsc_simulator.submits) == 3


async def test_generic_nack_fails_the_submit_permanently(smsc_simulator: SmscSimulator) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, nack_submits=True)
    async with running_driver(fast_options(smsc_simulator.port), RecordingSink()) as driver:
        with pytest.raises(SendError) as caught:
            await driver.send(sms("nacked"))
        assert driver.status().counters["generic_nack_received"] == 1
    assert caught.value.kind is SendErrorKind.PERMANENT
    assert "generic_nack" in caught.value.reason


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (CommandStatus.ESME_RINVDSTADR, SendErrorKind.PERMANENT),
        (CommandStatus.ESME_RINVSRCTON, SendErrorKind.PERMANENT),
        (CommandStatus.ESME_RINVTLVVAL, SendErrorKind.PERMANENT),
        (CommandStatus.ESME_RSYSERR, SendErrorKind.TRANSIENT),
    ],
)
async def test_refusals_map_to_send_error_kinds(
    smsc_simulator: SmscSimulator, status: int, kind: SendErrorKind
) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, submit_status=status)
    async with running_driver(fast_options(smsc_simulator.port), RecordingSink()) as driver:
        with pytest.raises(SendError) as caught:
            await driver.send(sms("refused"))
    assert caught.value.kind is kind
    assert caught.value.provider_code == f"0x{status:02X}"


async def test_missing_submit_sm_resp_is_ambiguous(smsc_simulator: SmscSimulator) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, silent=True)
    options = fast_options(smsc_simulator.port, response_timeout_s=0.3)
    async with running_driver(options, RecordingSink()) as driver:
        with pytest.raises(SendError) as caught:
            await driver.send(sms("lost in the void"))
    assert caught.value.kind is SendErrorKind.AMBIGUOUS
    assert len(smsc_simulator.submits) == 1  # never resent


async def test_receipt_before_submit_sm_resp_still_reaches_the_sink(
    smsc_simulator: SmscSimulator,
) -> None:
    smsc_simulator.behaviour = replace(
        smsc_simulator.behaviour,
        receipt_before_resp=True,
        receipt_tlvs=False,
        receipt_dates_with_seconds=True,
        outcomes={"UNDELIV": 1.0},
    )
    sink = RecordingSink()
    async with running_driver(fast_options(smsc_simulator.port), sink) as driver:
        result = await driver.send(sms("race"))
        assert await wait_until(lambda: len(sink.reports) == 1)
    report = sink.reports[0]
    assert report.provider_id == result.provider_ids[0]
    assert report.state is ReportState.UNDELIV
    assert report.done_at is not None


async def test_deliver_sm_is_answered_after_storage_even_when_storage_fails(
    smsc_simulator: SmscSimulator,
) -> None:
    sink = RecordingSink(failures=1)
    receipt = DeliverSm(
        esm_class=EsmClass.DELIVERY_RECEIPT,
        short_message=b"id:77 stat:DELIVRD",
    )
    async with running_driver(fast_options(smsc_simulator.port), sink):
        assert await smsc_simulator.deliver(receipt)  # the sink fails: ask for redelivery
        assert await smsc_simulator.deliver(receipt)  # stored
        assert await smsc_simulator.deliver(
            DeliverSm(esm_class=EsmClass.DELIVERY_RECEIPT, short_message=b"garbage")
        )
        assert await wait_until(lambda: len(smsc_simulator.deliver_responses) == 3)
    statuses = [r.command_status for r in smsc_simulator.deliver_responses]
    assert statuses == [CommandStatus.ESME_RX_T_APPN, 0, 0]
    assert [r.provider_id for r in sink.reports] == ["77"]


async def test_concatenated_mo_is_reassembled(smsc_simulator: SmscSimulator) -> None:
    sink = RecordingSink()
    first, second = "Hello from a ", "handset €"
    parts = [
        DeliverSm(
            source_addr_ton=1,
            source_addr="447700900123",
            destination_addr="BRAND",
            esm_class=EsmClass.UDHI,
            short_message=bytes((5, 0, 3, 9, 2, number)) + encode(text, Encoding.GSM7),
        )
        for number, text in ((2, second), (1, first))
    ]
    sar_mo = DeliverSm(
        source_addr="12345",
        data_coding=0x08,
        short_message="Жизнь".encode("utf-16-be"),
        tlvs=(
            Tlv.u16(Tag.SAR_MSG_REF_NUM, 300),
            Tlv.u8(Tag.SAR_TOTAL_SEGMENTS, 1),
            Tlv.u8(Tag.SAR_SEGMENT_SEQNUM, 1),
        ),
    )
    async with running_driver(fast_options(smsc_simulator.port), sink):
        for pdu in (*parts, sar_mo):
            assert await smsc_simulator.deliver(pdu)
        assert await wait_until(lambda: len(sink.inbound) == 2)
    assert sink.inbound[0].text == first + second
    assert sink.inbound[0].source == "+447700900123"
    assert sink.inbound[1].text == "Жизнь"


async def test_malformed_pdu_from_the_smsc_gets_generic_nack(smsc_simulator: SmscSimulator) -> None:
    unknown_command = bytes.fromhex("00000010000000770000000000000063")
    async with running_driver(fast_options(smsc_simulator.port), RecordingSink()) as driver:
        await smsc_simulator.send_raw(unknown_command)
        assert await wait_until(
            lambda: any(isinstance(p, GenericNack) for p in smsc_simulator.received)
        )
        await driver.send(sms("still bound"))
    nack = next(p for p in smsc_simulator.received if isinstance(p, GenericNack))
    assert (nack.sequence_number, nack.command_status) == (0x63, CommandStatus.ESME_RINVCMDID)


async def test_enquire_link_from_the_smsc_is_answered(smsc_simulator: SmscSimulator) -> None:
    async with running_driver(fast_options(smsc_simulator.port), RecordingSink()):
        await smsc_simulator.enquire_link()
        assert await wait_until(
            lambda: any(isinstance(p, EnquireLinkResp) for p in smsc_simulator.received)
        )


async def test_broken_framing_from_the_smsc_is_nacked_and_the_link_rebuilt(
    smsc_simulator: SmscSimulator,
) -> None:
    impossible_length = bytes.fromhex("00000005000000150000000000000001")
    async with running_driver(fast_options(smsc_simulator.port), RecordingSink()) as driver:
        await smsc_simulator.send_raw(impossible_length)
        assert await wait_until(lambda: driver.status().counters.get("binds", 0) >= 2)
        assert await driver.wait_available(2.0)
        counters = driver.status().counters
    nacks = [p for p in smsc_simulator.received if isinstance(p, GenericNack)]
    assert [n.command_status for n in nacks] == [CommandStatus.ESME_RINVCMDLEN]
    assert counters["generic_nack_sent"] == 1


async def test_a_refusal_after_throttling_keeps_its_own_kind(smsc_simulator: SmscSimulator) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, throttle_share=1.0)
    async with running_driver(
        fast_options(smsc_simulator.port, throttle_retries=20), RecordingSink()
    ) as driver:
        sending = asyncio.create_task(driver.send(sms("x")))
        assert await wait_until(lambda: len(smsc_simulator.submits) >= 2)
        smsc_simulator.behaviour = replace(
            smsc_simulator.behaviour,
            throttle_share=0.0,
            submit_status=CommandStatus.ESME_RINVDSTADR,
        )
        with pytest.raises(SendError) as caught:
            await asyncio.wait_for(sending, 3.0)
    assert caught.value.kind is SendErrorKind.PERMANENT
    assert caught.value.provider_code == "0x0B"


async def test_unbind_from_the_smsc_is_answered_and_the_driver_rebinds(
    smsc_simulator: SmscSimulator,
) -> None:
    async with running_driver(fast_options(smsc_simulator.port), RecordingSink()) as driver:
        await smsc_simulator.request_unbind()
        assert await wait_until(lambda: driver.status().counters.get("binds", 0) >= 2)
        assert await driver.wait_available(2.0)
        assert driver.status().counters["unbind_received"] == 1


async def test_reset_mid_stream_reconnects_and_in_flight_submit_is_ambiguous(
    smsc_simulator: SmscSimulator,
) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, response_delay_s=0.3)
    async with (
        FaultProxy("127.0.0.1", smsc_simulator.port) as proxy,
        running_driver(fast_options(proxy.port), RecordingSink()) as driver,
    ):
        in_flight = asyncio.create_task(driver.send(sms("cut off")))
        assert await wait_until(lambda: len(smsc_simulator.submits) == 1)
        proxy.reset()
        with pytest.raises(SendError) as caught:
            await asyncio.wait_for(in_flight, 2.0)
        assert caught.value.kind is SendErrorKind.AMBIGUOUS
        assert await wait_until(lambda: driver.status().counters.get("binds", 0) >= 2)
        assert await driver.wait_available(2.0)
        result = await driver.send(sms("after reset"))
    assert result.provider_ids
    assert proxy.resets >= 1


async def test_close_waits_for_in_flight_submits_then_unbinds(
    smsc_simulator: SmscSimulator,
) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, response_delay_s=0.2)
    sink = RecordingSink()
    async with running_driver(fast_options(smsc_simulator.port), sink) as driver:
        in_flight = asyncio.create_task(driver.send(sms("finish me")))
        assert await wait_until(lambda: len(smsc_simulator.submits) == 1)
        await driver.close()
        result = await in_flight
        with pytest.raises(SendError) as caught:
            await driver.send(sms("too late"))
    assert result.provider_ids
    assert caught.value.kind is SendErrorKind.TRANSIENT
    assert smsc_simulator.unbinds == 1
    assert driver.status().binds[0].state is SessionState.CLOSED


async def test_close_lets_a_started_multipart_send_finish_every_part(
    smsc_simulator: SmscSimulator,
) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, response_delay_s=0.1)
    async with running_driver(fast_options(smsc_simulator.port), RecordingSink()) as driver:
        in_flight = asyncio.create_task(driver.send(sms("z" * 400)))
        assert await wait_until(lambda: len(smsc_simulator.submits) == 1)
        await driver.close()
        result = await in_flight
    assert len(result.provider_ids) == result.segments == 3
    assert smsc_simulator.unbinds == 1


async def test_otp_validity_becomes_relative_validity_period(smsc_simulator: SmscSimulator) -> None:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    async with running_driver(fast_options(smsc_simulator.port), RecordingSink()) as driver:
        await driver.send(sms("code 1", expires_at=expires))
        with pytest.raises(SendError) as caught:
            await driver.send(sms("code 2", expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert caught.value.kind is SendErrorKind.PERMANENT
    validity = smsc_simulator.accepted[0].pdu.validity_period
    assert validity.endswith("000R")
    assert validity.startswith("00000000045") or validity == "000000000500000R"
    assert len(smsc_simulator.submits) == 1  # the expired one never left


async def test_sar_and_payload_long_message_modes(smsc_simulator: SmscSimulator) -> None:
    text = "x" * 200
    async with running_driver(
        fast_options(smsc_simulator.port, long_message="sar"), RecordingSink()
    ) as driver:
        sar_result = await driver.send(sms(text))
    async with running_driver(
        fast_options(smsc_simulator.port, long_message="payload"), RecordingSink()
    ) as driver:
        payload_result = await driver.send(sms(text))
    sar_parts = [a.pdu for a in smsc_simulator.accepted[:2]]
    assert sar_result.segments == 2
    assert [p.esm_class & EsmClass.UDHI for p in sar_parts] == [0, 0]
    assert [p.tlv(Tag.SAR_SEGMENT_SEQNUM).value for p in sar_parts] == [b"\x01", b"\x02"]  # type: ignore[union-attr]
    assert b"".join(p.short_message for p in sar_parts) == text.encode()
    payload = smsc_simulator.accepted[2].pdu
    assert (payload_result.segments, len(payload_result.provider_ids)) == (2, 1)
    assert payload.short_message == b""
    assert payload.tlv(Tag.MESSAGE_PAYLOAD).value == text.encode()  # type: ignore[union-attr]


async def test_tx_rx_pair_sends_on_one_bind_and_receives_on_the_other(
    smsc_simulator: SmscSimulator,
) -> None:
    sink = RecordingSink()
    options = fast_options(smsc_simulator.port, bind_mode="tx_rx")
    async with running_driver(options, sink) as driver:
        assert await wait_until(lambda: smsc_simulator.bound_count == 2)
        result = await driver.send(sms("split binds"))
        assert await wait_until(lambda: len(sink.reports) == 1)
        binds = {b.mode.value: b for b in driver.status().binds}
    assert set(binds) == {"transmitter", "receiver"}
    assert binds["transmitter"].counters.get("submit_sm") == 1
    assert binds["receiver"].counters.get("deliver_sm") == 1  # the receipt came on the rx bind
    assert sink.reports[0].provider_id == result.provider_ids[0]


async def test_send_without_a_bind_is_transient() -> None:
    options = fast_options(1, reconnect_initial_s=5.0)  # nothing listens on port 1
    async with running_driver(options, RecordingSink(), bound=False) as driver:
        with pytest.raises(SendError) as caught:
            await driver.send(sms("nowhere"))
    assert caught.value.kind is SendErrorKind.TRANSIENT


async def test_tps_budget_is_shared_by_all_binds(smsc_simulator: SmscSimulator) -> None:
    options = fast_options(smsc_simulator.port, binds=2, tps=40.0)
    async with running_driver(options, RecordingSink()) as driver:
        assert await wait_until(lambda: smsc_simulator.bound_count == 2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(asyncio.gather(*(driver.send(sms(f"t{i}")) for i in range(20))), 5.0)
        elapsed = loop.time() - started
        per_bind = [b.counters.get("submit_sm", 0) for b in driver.status().binds]
    assert elapsed >= 0.35  # 20 submits at 40/s after a burst of 4, whatever the bind count
    assert all(count > 0 for count in per_bind)
    assert sum(per_bind) == 20


async def test_receipt_states_follow_the_scripted_shares(smsc_simulator: SmscSimulator) -> None:
    smsc_simulator.behaviour = replace(
        smsc_simulator.behaviour,
        outcomes={"DELIVRD": 1.0, "UNDELIV": 1.0, "EXPIRED": 1.0, "REJECTD": 1.0},
        receipt_delay_s=0.05,
    )
    sink = RecordingSink()
    async with running_driver(fast_options(smsc_simulator.port), sink) as driver:
        for i in range(24):
            await driver.send(sms(f"s{i}"))
        assert await wait_until(lambda: len(sink.reports) == 24)
    states = {report.state for report in sink.reports}
    assert states == {
        ReportState.DELIVRD,
        ReportState.UNDELIV,
        ReportState.EXPIRED,
        ReportState.REJECTD,
    }


async def test_serve_simulator_reports_its_port_and_serves_until_cancelled() -> None:
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(
        serve_simulator(
            SimulatorBehaviour(receipt_delay_s=0.0),
            "127.0.0.1",
            0,
            on_ready=lambda _host, port: ready.set_result(port),
        )
    )
    try:
        port = await asyncio.wait_for(ready, 2.0)
        async with running_driver(fast_options(port), RecordingSink()) as driver:
            assert (await driver.send(sms("via the CLI entry"))).provider_ids
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


async def test_latin1_route_sends_latin1_unless_the_text_needs_gsm7(
    smsc_simulator: SmscSimulator,
) -> None:
    options = fast_options(smsc_simulator.port, data_coding="latin1")
    async with running_driver(options, RecordingSink()) as driver:
        await driver.send(sms("café @ 5£"))
        await driver.send(sms("price 5€"))
    first, second = (a.pdu for a in smsc_simulator.accepted)
    assert (first.data_coding, first.short_message) == (0x03, "café @ 5£".encode("latin-1"))
    assert (second.data_coding, second.short_message) == (0x00, encode("price 5€", Encoding.GSM7))
