"""Pure SMPP policies: validity, addressing, reconnect backoff, the TPS bucket, options."""

from __future__ import annotations

import asyncio
import random

import pytest
from pydantic import ValidationError

from switchboard.channels.base import ChannelDriver
from switchboard.channels.smpp.driver import (
    SmppDriver,
    SmppOptions,
    decode_text,
    relative_validity,
    source_address,
)
from switchboard.channels.smpp.session import TokenBucket, backoff_delay
from switchboard.domain.messages import Channel


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (600, "000000001000000R"),
        (299, "000000000459000R"),
        (1, "000000000001000R"),
        (0, "000000000001000R"),
        (90061, "000001010101000R"),
    ],
)
def test_relative_validity_is_smpp_relative_time(seconds: int, expected: str) -> None:
    assert relative_validity(seconds) == expected


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("BRAND", (5, 0, "BRAND")),
        ("My Shop", (5, 0, "My Shop")),
        ("+919876543210", (1, 1, "919876543210")),
        ("447700900123", (1, 1, "447700900123")),
    ],
)
def test_source_ton_npi_follow_the_sender_form(sender: str, expected: tuple[int, int, str]) -> None:
    assert source_address(sender) == expected


def test_mo_text_decodes_by_data_coding() -> None:
    assert decode_text(b"\x48\x1b\x65", 0x00) == "H€"
    assert decode_text("Жx".encode("utf-16-be"), 0x08) == "Жx"
    assert decode_text(b"caf\xe9", 0x03) == "café"


def test_backoff_doubles_from_initial_up_to_the_cap_with_bounded_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, initial_s=10, max_s=300, jitter=0.2, rng=rng) for n in range(1, 10)]
    bases = [10, 20, 40, 80, 160, 300, 300, 300, 300]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert backoff_delay(1, initial_s=10, max_s=300, jitter=0.0, rng=rng) == 10


async def test_token_bucket_paces_submits_to_the_rate() -> None:
    bucket = TokenBucket(50.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(30):
        await bucket.acquire()
    elapsed = loop.time() - started
    assert 0.45 <= elapsed <= 1.5  # 30 tokens at 50/s after a burst of 5


async def test_throttling_halves_the_rate_and_successes_earn_it_back() -> None:
    bucket = TokenBucket(100.0)
    bucket.penalise()
    bucket.penalise()
    assert bucket.rate == 25.0
    for _ in range(40):
        bucket.reward()
    assert bucket.rate == 100.0
    for _ in range(20):
        bucket.penalise()
    assert bucket.rate == bucket.min_rate == 1.0


async def test_a_pause_holds_every_acquirer() -> None:
    bucket = TokenBucket(1000.0)
    bucket.pause(0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await bucket.acquire()
    await bucket.acquire(priority=True)
    assert loop.time() - started >= 0.19


def test_options_validate_and_hide_the_password() -> None:
    options = SmppOptions(host="127.0.0.1", system_id="esme", password="pw")
    assert options.window == 10
    assert options.enquire_link_s == 30
    assert options.response_timeout_s == 60
    assert options.reconnect_initial_s == 10
    assert "pw" not in repr(options)
    with pytest.raises(ValidationError):
        SmppOptions(host="h", system_id="esme", password="way-too-long-password")
    with pytest.raises(ValidationError):
        SmppOptions(host="h", system_id="esme", password="pw", dlt_entity_tag=0x0200)
    with pytest.raises(ValidationError):
        SmppOptions(host="h", system_id="esme", password="pw", long_message="chunks")


def test_smpp_driver_satisfies_the_channel_driver_contract() -> None:
    driver: ChannelDriver = SmppDriver(
        "smsc", SmppOptions(host="127.0.0.1", system_id="esme", password="pw")
    )
    assert driver.channels == frozenset({Channel.SMS})
    assert not driver.is_available()


async def test_a_new_ceiling_moves_a_full_rate_and_caps_a_throttled_one() -> None:
    bucket = TokenBucket(100)
    bucket.set_ceiling(50)
    assert (bucket.rate, bucket.max_rate) == (50, 50)
    bucket.set_ceiling(100)  # a worker left: back to the whole rate
    assert bucket.rate == 100
    bucket.penalise()  # throttled: 50
    bucket.set_ceiling(80)
    assert (bucket.rate, bucket.max_rate) == (50, 80)
    bucket.set_ceiling(20)
    assert bucket.rate == 20
    for _ in range(40):
        bucket.reward()
    assert bucket.rate == 20
