"""Retry schedule: ten attempts over about 75 hours with ±10% jitter, then the dead letter queue."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from switchboard.domain.callbacks import MAX_ATTEMPTS, RETRY_DELAYS, retry_delay

NOMINAL = [
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
]


class FixedRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_schedule_is_the_standard_webhooks_example() -> None:
    assert list(RETRY_DELAYS) == NOMINAL
    assert MAX_ATTEMPTS == 10
    assert sum(NOMINAL, timedelta(0)) == timedelta(hours=75, minutes=35, seconds=5)


def test_without_jitter_each_attempt_waits_its_nominal_delay_then_dead_letters() -> None:
    middle = FixedRandom(0.5)

    delays = [retry_delay(made, middle) for made in range(12)]

    assert delays[:10] == NOMINAL
    assert delays[10:] == [None, None]


@pytest.mark.parametrize(("value", "factor"), [(0.0, 0.9), (0.999_999_999, 1.1)])
def test_jitter_is_bounded_by_ten_percent(value: float, factor: float) -> None:
    extreme = FixedRandom(value)

    for made in range(1, MAX_ATTEMPTS):
        delay = retry_delay(made, extreme)
        assert delay is not None
        assert delay.total_seconds() == pytest.approx(NOMINAL[made].total_seconds() * factor)


def test_a_seeded_source_gives_ten_attempts_within_ten_percent_and_no_eleventh() -> None:
    source = random.Random(20_261_125)
    attempts = 0
    elapsed = timedelta(0)

    for made in range(100):
        delay = retry_delay(made, source)
        if delay is None:
            break
        nominal = NOMINAL[made]
        assert nominal * 0.9 <= delay <= nominal * 1.1
        elapsed += delay
        attempts += 1

    assert attempts == 10
    assert timedelta(hours=68) < elapsed < timedelta(hours=84)


def test_retry_after_longer_than_the_schedule_is_honoured() -> None:
    delay = retry_delay(1, FixedRandom(0.5), retry_after=timedelta(minutes=2))

    assert delay == timedelta(minutes=2)


def test_retry_after_shorter_than_the_schedule_does_not_bring_the_attempt_forward() -> None:
    delay = retry_delay(3, FixedRandom(0.5), retry_after=timedelta(seconds=1))

    assert delay == timedelta(minutes=30)


def test_retry_after_does_not_add_an_eleventh_attempt() -> None:
    assert retry_delay(10, FixedRandom(0.5), retry_after=timedelta(seconds=30)) is None


def test_negative_attempt_count_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        retry_delay(-1, FixedRandom(0.5))
