"""Cluster-wide limits: workers sharing one database divide a connector's TPS, its binds and the
callback slots per endpoint among themselves, and take a dead worker's share back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from tests.conftest import SettingsFactory

from switchboard.api.app import create_app
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


def _settings(make_settings: SettingsFactory, smsc: SmscSimulator, binds: int = 1) -> Any:
    return make_settings(
        connectors=[{"name": "carrier", "type": "smpp", "host": "127.0.0.1", "port": smsc.port,
                     "system_id": "switchboard", "password": "secret", "tps": 120,
                     "binds": binds, "close_grace_s": 1, "reconnect_initial_s": 0.05}],
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


async def _until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _bind_slots(container: Container) -> int:
    driver = container.drivers["carrier"]
    assert isinstance(driver, SmppDriver)
    return driver.status().bind_slots


async def test_two_workers_hold_the_connectors_binds_between_them_not_twice(
    make_settings: SettingsFactory, smsc: SmscSimulator, clock: FrozenClock
) -> None:
    settings = _settings(make_settings, smsc, binds=4)
    first = build_container(settings, clock=clock)
    second = build_container(settings, clock=clock)
    await first.start(run_workers=True)
    try:
        assert await _until(lambda: smsc.bound_count == 4)
        await second.start(run_workers=True)  # counts two workers before it binds: opens 2
        assert first.shares is not None
        assert await first.shares.update() == 2  # the first's next beat: it retires 2
        assert await _until(lambda: smsc.bound_count == 4 and smsc.unbinds == 2)
        assert (_bind_slots(first), _bind_slots(second)) == (2, 2)
        assert len(smsc.binds) == 6  # the second never opened more than its share
        await asyncio.sleep(0.3)
        assert smsc.bound_count == 4
        await _operator_sees_its_share(first)

        await second.stop()  # its 2 binds go, and their share comes back to the first
        assert await first.shares.update() == 1
        assert await _until(lambda: smsc.bound_count == 4 and len(smsc.binds) == 8)
        assert _bind_slots(first) == 4
    finally:
        for worker in (first, second):
            if worker._started:
                await worker.stop()


async def test_at_the_carriers_bind_limit_a_joining_worker_binds_once_the_first_shrinks(
    make_settings: SettingsFactory, smsc: SmscSimulator, clock: FrozenClock
) -> None:
    smsc.behaviour = SimulatorBehaviour(max_binds=4)  # what the carrier allows this account
    settings = _settings(make_settings, smsc, binds=4)
    first = build_container(settings, clock=clock)
    second = build_container(settings, clock=clock)
    await first.start(run_workers=True)
    try:
        assert await _until(lambda: smsc.bound_count == 4)
        await second.start(run_workers=True)
        assert await _until(lambda: smsc.binds_refused >= 2)  # the first still holds all 4
        assert first.shares is not None
        assert await first.shares.update() == 2
        assert await _until(lambda: all(_all_bound(w, 2) for w in (first, second)))
        assert smsc.bound_count == 4
        refused = smsc.binds_refused
        await asyncio.sleep(0.3)
        assert smsc.binds_refused == refused  # settled: nobody asks for more
        second_driver = second.drivers["carrier"]
        assert isinstance(second_driver, SmppDriver)
        assert second_driver.counters["binds_retired"] == 0  # it never held more than 2
    finally:
        for worker in (first, second):
            if worker._started:
                await worker.stop()


def _all_bound(container: Container, count: int) -> bool:
    driver = container.drivers["carrier"]
    assert isinstance(driver, SmppDriver)
    states = [bind.state.value for bind in driver.status().binds]
    return states == ["bound"] * count


async def _operator_sees_its_share(worker: Container) -> None:
    """/status, /metrics and the console's connectors table show 2 of 4 binds held here."""
    app = create_app(worker, manage_lifecycle=False)
    same = {"Sec-Fetch-Site": "same-origin"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
    ) as http:
        connectors = (await http.get("/status")).json()["connectors"]
        detail = next(c["detail"] for c in connectors if c["name"] == "carrier")
        assert (detail["bind_share"], detail["bind_slots"]) == (0.5, 2)
        assert [bind["state"] for bind in detail["binds"]] == ["bound", "bound"]
        metrics = (await http.get("/metrics")).text
        assert 'switchboard_smpp_binds{connector="carrier",state="bound"} 2.0' in metrics
        assert worker.console is not None
        await worker.console.operators.create("ops@example.com", "operator password 1")
        login = await http.post(
            "/console/admin/login",
            data={"email": "ops@example.com", "password": "operator password 1"}, headers=same,
        )  # fmt: skip
        assert login.status_code == 303
        page = await http.get("/console/admin/")
        assert '<span class="bind-share">2 held, share 0.5:</span> bound, bound' in page.text
