"""A connector's binds divided among workers: SmppDriver.set_share against the simulator over
loopback TCP, counting the binds the SMSC sees and the submit_sm it takes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from switchboard.channels.base import SendResult
from switchboard.channels.smpp.driver import SmppDriver
from switchboard.channels.smpp.pdu import BindReceiver, DeliverSm, EsmClass
from switchboard.channels.smpp.session import SessionState
from switchboard.channels.smpp.simulator import SmscSimulator

from .peers import RecordingSink, fast_options, running_driver, sms, wait_until


async def test_half_share_leaves_half_the_binds_at_the_smsc_and_a_full_share_restores_them(
    smsc_simulator: SmscSimulator,
) -> None:
    options = fast_options(smsc_simulator.port, binds=4)
    async with running_driver(options, RecordingSink()) as driver:
        assert await wait_until(lambda: smsc_simulator.bound_count == 4)
        driver.set_share(1 / 2)
        assert await wait_until(lambda: smsc_simulator.bound_count == 2 and _listed(driver) == 2)
        assert smsc_simulator.unbinds == 2  # unbound cleanly, not dropped
        status = driver.status()
        assert (status.bind_share, status.bind_slots) == (0.5, 2)
        assert [b.name for b in status.binds] == ["smsc#1-transceiver", "smsc#2-transceiver"]
        assert driver.is_available()

        driver.set_share(1.0)
        assert await wait_until(lambda: smsc_simulator.bound_count == 4)
        status = driver.status()
        assert status.bind_slots == 4
        assert [b.state for b in status.binds] == [SessionState.BOUND] * 4
    assert len(smsc_simulator.binds) == 6  # 4, then 2 more: the kept binds were never redone


async def test_the_same_share_again_changes_no_bind(smsc_simulator: SmscSimulator) -> None:
    options = fast_options(smsc_simulator.port, binds=4)
    async with running_driver(options, RecordingSink()) as driver:
        assert await wait_until(lambda: smsc_simulator.bound_count == 4)
        for _ in range(5):
            driver.set_share(1 / 2)
        assert await wait_until(lambda: _listed(driver) == 2)
        driver.set_share(1 / 2)
        await asyncio.sleep(0.2)
        assert smsc_simulator.bound_count == 2
        assert smsc_simulator.unbinds == 2
        assert len(smsc_simulator.binds) == 4


async def test_quick_share_changes_converge_to_the_last_one(smsc_simulator: SmscSimulator) -> None:
    options = fast_options(smsc_simulator.port, binds=4)
    async with running_driver(options, RecordingSink()) as driver:
        assert await wait_until(lambda: smsc_simulator.bound_count == 4)
        for share in (1 / 4, 1.0, 1 / 2, 1 / 8, 1 / 3, 3 / 4):
            driver.set_share(share)
            await asyncio.sleep(0.01)
        assert await wait_until(lambda: smsc_simulator.bound_count == 3 and _listed(driver) == 3)
        await asyncio.sleep(0.3)  # and it stays there
        assert smsc_simulator.bound_count == 3
        assert driver.status().bind_slots == 3


async def test_an_eighth_of_four_binds_keeps_one_and_warns_once(
    smsc_simulator: SmscSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    options = fast_options(smsc_simulator.port, binds=4)
    caplog.set_level(logging.WARNING, logger="switchboard.channels.smpp.driver")
    async with running_driver(options, RecordingSink()) as driver:
        assert await wait_until(lambda: smsc_simulator.bound_count == 4)
        driver.set_share(1 / 8)
        driver.set_share(1 / 8)
        assert await wait_until(lambda: smsc_simulator.bound_count == 1 and _listed(driver) == 1)
        await asyncio.sleep(0.2)
        assert smsc_simulator.bound_count == 1
        result = await driver.send(sms("still sending"))
        warnings = [r.getMessage() for r in caplog.records if "cannot be divided" in r.message]
    assert result.provider_ids
    assert warnings == [
        "smpp smsc: binds = 4 cannot be divided among 8 workers: each keeps one, "
        "8 in all, above the connector's limit"
    ]


async def test_a_shrink_retires_the_binds_the_smsc_refused_and_keeps_the_bound_ones(
    smsc_simulator: SmscSimulator,
) -> None:
    # The first binds are refused once, so the bound ones are the later slots: then at the
    # account's limit, the early ones keep being refused.
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, max_binds=2)
    smsc_simulator.refuse_binds = 2
    options = fast_options(smsc_simulator.port, binds=4)
    async with running_driver(options, RecordingSink()) as driver:
        assert await wait_until(
            lambda: smsc_simulator.bound_count == 2 and smsc_simulator.binds_refused >= 2
        )
        driver.set_share(1 / 2)
        assert await wait_until(lambda: _listed(driver) == 2)
        assert [b.state for b in driver.status().binds] == [SessionState.BOUND] * 2
        assert smsc_simulator.unbinds == 0  # no bound one was given up
        refused = smsc_simulator.binds_refused
        await asyncio.sleep(0.3)  # several reconnect backoffs: no bind is tried any more
        assert smsc_simulator.binds_refused == refused
        assert driver.is_available()


async def test_a_share_given_before_start_opens_only_that_many_binds(
    smsc_simulator: SmscSimulator,
) -> None:
    driver = SmppDriver("smsc", fast_options(smsc_simulator.port, binds=4, bind_mode="tx_rx"))
    driver.set_share(1 / 2)
    await driver.start(RecordingSink())
    try:
        assert await driver.wait_available(3.0)
        assert await wait_until(lambda: smsc_simulator.bound_count == 4)  # 2 tx + 2 rx
        await asyncio.sleep(0.2)
        assert smsc_simulator.bound_count == 4
        assert len(smsc_simulator.binds) == 4
    finally:
        await driver.close()


@pytest.mark.parametrize(("bind_mode", "binds_seen"), [("transceiver", 1), ("tx_rx", 2)])
async def test_messages_sent_during_a_shrink_are_each_taken_once_with_every_receipt(
    smsc_simulator: SmscSimulator, bind_mode: str, binds_seen: int
) -> None:
    # Every fifth message has three parts. Responses and receipts lag, so the retiring binds
    # hold a full window and owe receipts when the share drops.
    smsc_simulator.behaviour = replace(
        smsc_simulator.behaviour, response_delay_s=0.03, receipt_delay_s=0.15
    )
    sink = RecordingSink()
    options = fast_options(smsc_simulator.port, binds=4, bind_mode=bind_mode, window=5)
    async with running_driver(options, sink) as driver:
        assert await wait_until(lambda: smsc_simulator.bound_count == 4 * binds_seen)
        texts = [f"m{n:03d} " + ("x" * 395 if n % 5 == 0 else "short") for n in range(300)]
        queue: asyncio.Queue[str] = asyncio.Queue()
        for text in texts:
            queue.put_nowait(text)
        results: dict[str, SendResult] = {}

        async def sender() -> None:
            while not queue.empty():
                text = queue.get_nowait()
                results[text] = await driver.send(sms(text, message_id=text[:4]))

        senders = [asyncio.create_task(sender()) for _ in range(24)]
        assert await wait_until(lambda: len(results) >= 60)
        retiring = [b for b in driver.status().binds if not b.name.startswith("smsc#1-")]
        assert sum(b.outstanding for b in retiring) > 0  # submits on the wire as they retire
        driver.set_share(1 / 4)
        await asyncio.wait_for(asyncio.gather(*senders), 20.0)  # no send failed
        assert await wait_until(lambda: smsc_simulator.bound_count == binds_seen, 5.0)
        provider_ids = {pid for result in results.values() for pid in result.provider_ids}
        assert await wait_until(lambda: len({r.provider_id for r in sink.reports}) >= 420, 5.0)
        retired = driver.counters["binds_retired"]

    assert retired == 3
    assert smsc_simulator.unbinds >= 3 * binds_seen
    parts_taken = [a.pdu.short_message for a in smsc_simulator.accepted]
    assert len(parts_taken) == len(smsc_simulator.submits) == 60 * 3 + 240  # none twice
    assert len(set(parts_taken)) == len(parts_taken)
    assert {text[:4] for text in results} == {text[:4] for text in texts}
    assert len(provider_ids) == 420
    assert {report.provider_id for report in sink.reports} == provider_ids
    if bind_mode == "tx_rx":
        receivers = [b for b in smsc_simulator.binds if isinstance(b, BindReceiver)]
        assert len(receivers) == 4


async def test_a_receipt_crossing_a_retiring_binds_unbind_is_stored_not_cut_off(
    smsc_simulator: SmscSimulator,
) -> None:
    smsc_simulator.behaviour = replace(smsc_simulator.behaviour, unbind_resp_delay_s=0.2)
    sink = RecordingSink(store_s=0.4)  # still storing when the unbind_resp comes
    options = fast_options(smsc_simulator.port, binds=2, close_grace_s=2.0)
    async with running_driver(options, sink) as driver:
        assert await wait_until(lambda: smsc_simulator.bound_count == 2)
        driver.set_share(1 / 2)
        assert await wait_until(lambda: smsc_simulator.unbinds == 1)
        assert await smsc_simulator.deliver(_receipt("A0000042"), unbinding=True)
        assert await wait_until(lambda: _listed(driver) == 1, 3.0)
        assert [r.provider_id for r in sink.reports] == ["2684354626"]  # stored once
        assert smsc_simulator.bound_count == 1
        # The SMSC closed the link with its unbind_resp, before the answer: it sends the
        # receipt again on the remaining bind (a duplicate the receipt path absorbs).
        assert await wait_until(lambda: len(sink.reports) == 2, 3.0)
    assert smsc_simulator.redelivered == 1
    assert {r.provider_id for r in sink.reports} == {"2684354626"}


def _receipt(message_id: str) -> DeliverSm:
    text = f"id:{message_id} sub:001 dlvrd:001 submit date:2612021200 done date:2612021200 "
    return DeliverSm(
        source_addr="919876543210",
        destination_addr="BRAND",
        esm_class=EsmClass.DELIVERY_RECEIPT,
        short_message=(text + "stat:DELIVRD err:000 text:").encode("ascii"),
    )


def _listed(driver: SmppDriver) -> int:
    """Sessions the driver still lists (retiring ones stay listed until unbound)."""
    return len(driver.status().binds)
