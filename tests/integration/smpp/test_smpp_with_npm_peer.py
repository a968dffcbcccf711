"""SmppDriver against an independent SMSC (the npm `smpp` package) over loopback TCP.

The peer logs every submit_sm it decoded, so these tests assert the exact PDUs another
implementation saw: addresses with TON/NPI, data_coding, esm_class, UDH, octets and TLVs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from switchboard.channels.base import ReportState, SendError, SendErrorKind
from switchboard.channels.smpp.pdu import CommandStatus
from switchboard.channels.smpp.session import SessionState
from switchboard.domain.encoding import Encoding, encode
from switchboard.testing.faultproxy import FaultProxy

from .peers import (
    NPM_PASSWORD,
    NPM_SYSTEM_ID,
    NpmSmsc,
    RecordingSink,
    fast_options,
    running_driver,
    sms,
    wait_until,
)


def npm_options(**overrides: object) -> dict[str, object]:
    return {"system_id": NPM_SYSTEM_ID, "password": NPM_PASSWORD, **overrides}


async def test_single_gsm_message_arrives_exactly_and_its_receipt_returns(
    npm_smsc: NpmSmsc,
) -> None:
    sink = RecordingSink()
    options = fast_options(npm_smsc.port, **npm_options())
    async with running_driver(options, sink) as driver:
        result = await driver.send(sms("Your code is 123456 @£$_", dlt=True))
        assert await wait_until(lambda: len(sink.reports) == 1)
    [submit] = npm_smsc.records()
    assert submit["source_addr_ton"] == 5
    assert submit["source_addr_npi"] == 0
    assert submit["source_addr"] == "BRAND"
    assert (submit["dest_addr_ton"], submit["dest_addr_npi"]) == (1, 1)
    assert submit["destination_addr"] == "919876543210"
    assert (submit["esm_class"], submit["data_coding"], submit["registered_delivery"]) == (0, 0, 1)
    assert submit["message"] == "Your code is 123456 @£$_"
    assert submit["short_message_hex"] == encode("Your code is 123456 @£$_", Encoding.GSM7).hex()
    assert submit["tlvs"]["0x1400"] == b"1201159100000000001\x00".hex()
    assert submit["tlvs"]["0x1401"] == b"1107160016156755389\x00".hex()
    report = sink.reports[0]
    assert result.provider_ids == (submit["message_id"],)
    assert (report.provider_id, report.state) == (submit["message_id"], ReportState.DELIVRD)
    assert report.raw["receipted_message_id"] == submit["message_id"]


async def test_unicode_goes_as_ucs2(npm_smsc: NpmSmsc) -> None:
    text = "Код: 4821 😀"
    options = fast_options(npm_smsc.port, **npm_options())
    async with running_driver(options, RecordingSink()) as driver:
        await driver.send(sms(text))
    [submit] = await npm_smsc.wait_records(1)
    assert submit["data_coding"] == 8
    assert submit["short_message_hex"] == text.encode("utf-16-be").hex()
    assert submit["message"] == text


async def test_three_part_gsm7_message_carries_a_correct_udh(npm_smsc: NpmSmsc) -> None:
    text = ("Long OTP notice with escapes {€} " * 12)[:400]
    options = fast_options(npm_smsc.port, **npm_options())
    async with running_driver(options, RecordingSink()) as driver:
        result = await driver.send(sms(text))
    parts = await npm_smsc.wait_records(3)
    [whole] = await npm_smsc.wait_records(1, command="long_message")
    assert result.segments == 3
    assert len(set(result.provider_ids)) == 3
    reference = parts[0]["udh"][0][4:6]
    assert [p["udh"] for p in parts] == [[f"0003{reference}03{n:02x}"] for n in (1, 2, 3)]
    assert all(p["esm_class"] & 0x40 for p in parts)
    assert all(len(bytes.fromhex(p["short_message_hex"])) <= 6 + 153 for p in parts)
    assert whole["text"] == text


async def test_sar_and_payload_modes_reach_the_peer(npm_smsc: NpmSmsc) -> None:
    text = "y" * 170
    for mode in ("sar", "payload"):
        options = fast_options(npm_smsc.port, **npm_options(long_message=mode))
        async with running_driver(options, RecordingSink()) as driver:
            await driver.send(sms(text))
    sar_first, sar_second, payload = await npm_smsc.wait_records(3)
    assert (sar_first["tlvs"]["0x020c"], sar_first["tlvs"]["0x020e"]) == (
        sar_second["tlvs"]["0x020c"],
        2,
    )
    assert (sar_first["tlvs"]["0x020f"], sar_second["tlvs"]["0x020f"]) == (1, 2)
    assert sar_first["esm_class"] == 0
    assert payload["short_message_hex"] == ""
    assert payload["tlvs"]["0x0424"] == text.encode().hex()


async def test_wrong_password_shows_the_bind_status(
    npm_smsc_factory: Callable[..., NpmSmsc],
) -> None:
    peer = npm_smsc_factory("--reject-status", str(CommandStatus.ESME_RINVPASWD))
    options = fast_options(peer.port, **npm_options(password="nope"))
    async with running_driver(options, RecordingSink(), bound=False) as driver:
        assert await wait_until(lambda: driver.status().binds[0].state is SessionState.AUTH_FAILED)
        status = driver.status().binds[0]
    assert status.last_bind_status == CommandStatus.ESME_RINVPASWD
    binds = await peer.wait_records(3, command="bind_transceiver")
    assert [b["accepted"] for b in binds] == [False, False, False]


async def test_throttling_peer_loses_and_reorders_nothing(
    npm_smsc_factory: Callable[..., NpmSmsc],
) -> None:
    peer = npm_smsc_factory("--throttle-share", "0.5", "--seed", "3")
    texts = [f"order {i}" for i in range(15)]
    options = fast_options(peer.port, **npm_options(throttle_retries=30))
    async with running_driver(options, RecordingSink()) as driver:
        for text in texts:
            await driver.send(sms(text))
    records = peer.records()
    accepted = [r["message"] for r in records if r["command_status"] == 0]
    throttled = [r for r in records if r["command_status"] == CommandStatus.ESME_RTHROTTLED]
    assert accepted == texts
    assert throttled


async def test_text_only_receipts_with_seconds_are_parsed(
    npm_smsc_factory: Callable[..., NpmSmsc],
) -> None:
    peer = npm_smsc_factory("--dlr-mode", "text", "--dates-with-seconds", "--dlr-stat", "EXPIRED")
    sink = RecordingSink()
    options = fast_options(peer.port, **npm_options())
    async with running_driver(options, sink) as driver:
        result = await driver.send(sms("expiring"))
        assert await wait_until(lambda: len(sink.reports) == 1)
        assert await wait_until(lambda: len(peer.records("deliver_sm_resp")) == 1)
    report = sink.reports[0]
    assert (report.provider_id, report.state) == (result.provider_ids[0], ReportState.EXPIRED)
    assert report.done_at is not None
    assert report.error_code == "001"
    assert peer.records("deliver_sm_resp")[0]["command_status"] == 0


async def test_reset_through_a_fault_proxy_reconnects_to_the_peer(npm_smsc: NpmSmsc) -> None:
    async with FaultProxy("127.0.0.1", npm_smsc.port) as proxy:
        options = fast_options(proxy.port, **npm_options())
        async with running_driver(options, RecordingSink()) as driver:
            await driver.send(sms("before"))
            proxy.reset()
            assert await wait_until(lambda: driver.status().counters.get("binds", 0) >= 2)
            assert await driver.wait_available(2.0)
            await driver.send(sms("after"))
    assert [r["message"] for r in npm_smsc.records()] == ["before", "after"]
    assert len(npm_smsc.records("bind_transceiver")) == 2


async def test_graceful_close_sends_unbind_to_the_peer(npm_smsc: NpmSmsc) -> None:
    options = fast_options(npm_smsc.port, **npm_options())
    async with running_driver(options, RecordingSink()) as driver:
        await driver.send(sms("bye"))
    assert await npm_smsc.wait_records(1, command="unbind")
    with pytest.raises(SendError) as caught:
        await driver.send(sms("closed"))
    assert caught.value.kind is SendErrorKind.TRANSIENT


async def test_enquire_link_is_answered_by_the_peer(npm_smsc: NpmSmsc) -> None:
    options = fast_options(npm_smsc.port, **npm_options(enquire_link_s=0.1))
    async with running_driver(options, RecordingSink()) as driver:
        await asyncio.sleep(0.45)
        assert driver.is_available()
        assert driver.status().counters.get("enquire_link_timeouts", 0) == 0
    assert len(npm_smsc.records("enquire_link")) >= 2


async def test_a_halved_share_unbinds_half_the_binds_at_the_peer_and_loses_no_message(
    npm_smsc: NpmSmsc,
) -> None:
    options = fast_options(npm_smsc.port, **npm_options(binds=4, window=4))
    async with running_driver(options, RecordingSink()) as driver:
        assert await npm_smsc.wait_records(4, command="bind_transceiver")
        assert await wait_until(lambda: len(driver.status().binds) == 4 and driver.is_available())
        texts = [f"during shrink {n:03d}" for n in range(200)]
        pending = list(reversed(texts))
        provider_ids: list[str] = []

        async def sender() -> None:
            while pending:
                result = await driver.send(sms(pending.pop()))
                provider_ids.extend(result.provider_ids)

        senders = [asyncio.create_task(sender()) for _ in range(16)]
        assert await wait_until(lambda: len(provider_ids) >= 40)
        driver.set_share(1 / 2)
        await asyncio.wait_for(asyncio.gather(*senders), 15.0)
        assert await npm_smsc.wait_records(2, command="unbind")
        assert await wait_until(lambda: len(driver.status().binds) == 2)
        await asyncio.sleep(0.2)
        unbinds_while_running = len(npm_smsc.records("unbind"))
    submits = npm_smsc.records()
    assert unbinds_while_running == 2  # 4 bound, 2 unbound: the peer holds 2
    assert len(npm_smsc.records("bind_transceiver")) == 4
    assert sorted(s["message"] for s in submits) == texts  # each exactly once
    assert all(s["command_status"] == 0 for s in submits)
    assert sorted(provider_ids) == sorted(s["message_id"] for s in submits)
