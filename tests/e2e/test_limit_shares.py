"""Cluster-wide limits: workers sharing one database divide a connector's TPS and the callback
slots per endpoint among themselves, and take a dead worker's share back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.conftest import SettingsFactory

from switchboard.bootstrap import Container, build_container
from switchboard.channels.smpp.driver import SmppDriver
from switchboard.channels.smpp.simulator import SimulatorBehaviour, SmscSimulator
from switchboard.clock import FrozenClock


@pytest.fixture
async def smsc() -> AsyncIterator[SmscSimulator]:
    simulator = SmscSimulator(SimulatorBehaviour(), port=0, seed=3)
    await simulator.start()
    yield simulator
    await simulator.stop()


def _settings(make_settings: SettingsFactory, smsc: SmscSimulator) -> Any:
    return make_settings(
        connectors=[{"name": "carrier", "type": "smpp", "host": "127.0.0.1", "port": smsc.port,
                     "system_id": "switchboard", "password": "secret", "tps": 120}],
        routes=[{"channel": "SMS", "connectors": ["carrier"]}],
        webhooks={"max_concurrency_per_endpoint": 6},
        worker={"poll_interval_s": 0.05, "lease_s": 5, "presence_interval_s": 3600,
                "presence_ttl_s": 15},
    )  # fmt: skip


def _tps(container: Container) -> float:
    driver = container.drivers["carrier"]
    assert isinstance(driver, SmppDriver)
    return driver.status().tps


async def test_workers_divide_the_connector_tps_and_take_back_a_dead_workers_share(
    make_settings: SettingsFactory, smsc: SmscSimulator, clock: FrozenClock
) -> None:
    settings = _settings(make_settings, smsc)
    first = build_container(settings, clock=clock)
    second = build_container(settings, clock=clock)
    third = build_container(settings, clock=clock)
    await first.start(run_workers=True)
    try:
        assert _tps(first) == 120
        await second.start(run_workers=True)
        await third.start(run_workers=True)
        for worker in (first, second, third):  # each at its next beat
            assert worker.shares is not None
            assert await worker.shares.update() == 3
        assert first.shares is not None
        assert (_tps(first), _tps(second), _tps(third)) == (40, 40, 40)
        assert first.webhooks._limit == 2

        await third.stop()  # a clean stop leaves at once
        assert await first.shares.update() == 2
        assert _tps(first) == 60

        # the second dies without a word: its share comes back once it is unseen for the ttl
        assert second.shares is not None
        second._sharing = False
        clock.advance(16)
        await second.stop()
        assert await first.shares.update() == 1
        assert _tps(first) == 120
        assert first.webhooks._limit == 6
    finally:
        for worker in (first, second, third):
            if worker._started:
                await worker.stop()
