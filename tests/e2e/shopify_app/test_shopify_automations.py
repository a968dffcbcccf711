"""Shopify → the automation engine → SMPP: the SMS a shop's webhooks make reach the npm SMSC."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from tests.conftest import SettingsFactory
from tests.e2e.conftest import eventually
from tests.e2e.shopify_app.conftest import (
    Harness,
    RecordingSink,
    open_harness,
    shopify_settings,
)
from tests.e2e.shopify_app.test_shopify_app import PHONE, order, processed
from tests.integration.smpp.conftest import npm_smsc_dir, npm_smsc_factory  # noqa: F401
from tests.integration.smpp.peers import NpmSmsc

from switchboard.automations.rules import AutomationKind, JobStatus
from switchboard.bootstrap import build_container
from switchboard.clock import FrozenClock
from switchboard.testing.shopify_peer import ShopifyPeer

REMINDER_DELAY_S = 60 * 60


@pytest.fixture
def smsc(npm_smsc_factory: Callable[..., NpmSmsc]) -> NpmSmsc:  # noqa: F811
    return npm_smsc_factory()


@pytest.fixture
async def shop(
    make_settings: SettingsFactory, clock: FrozenClock, peer: ShopifyPeer, smsc: NpmSmsc
) -> AsyncIterator[Harness]:
    """An installed shop whose automations are the engine's defaults, sending through SMPP."""
    settings = make_settings(
        integrations=shopify_settings(peer),
        automations={"poll_interval_s": 0.05},
        connectors=[
            {"name": "carrier-a", "type": "smpp", "host": "127.0.0.1", "port": smsc.port,
             "system_id": smsc.system_id, "password": smsc.password, "window": 10, "tps": 200,
             "enquire_link_s": 5, "reconnect_initial_s": 0.2, "reconnect_max_s": 1}
        ],
        routes=[{"channel": "SMS", "connectors": ["carrier-a"]}],
    )  # fmt: skip
    async for harness in open_harness(
        build_container(settings, clock=clock), peer, RecordingSink()
    ):
        installed = await harness.install()
        assert installed.status_code == 200, installed.text
        # the reminder's quiet hours depend on the hour the test runs at: not what is tested
        for automation in await harness.container.automations.list(harness.customer_id):
            if automation.kind is AutomationKind.ABANDONED_CHECKOUT:
                await harness.container.automations.update(
                    harness.customer_id, automation.id, {"quiet_hours": None}
                )
        yield harness


def texts_to(smsc: NpmSmsc, phone: str) -> list[str]:
    return [str(r["message"]) for r in smsc.records() if r["destination_addr"] == phone.lstrip("+")]


async def test_install_then_order_sends_one_confirmation_sms(shop: Harness, smsc: NpmSmsc) -> None:
    await shop.emit("orders/create", order(), webhook_id=str(uuid.uuid4()))
    [submit] = await smsc.wait_records(1, timeout_s=10)
    assert submit["destination_addr"] == PHONE.lstrip("+")
    assert "#1001" in submit["message"]
    assert "Asha" in submit["message"]


async def test_a_retried_order_webhook_sends_one_sms(shop: Harness, smsc: NpmSmsc) -> None:
    webhook_id, resent = str(uuid.uuid4()), str(uuid.uuid4())
    for _ in range(3):
        assert (await shop.emit("orders/create", order(), webhook_id=webhook_id)).status_code == 200
    # the same order under a new webhook id (Shopify resends) is still the same event
    await shop.emit("orders/create", order(), webhook_id=resent)
    await processed(shop, webhook_id)
    await processed(shop, resent)
    await smsc.wait_records(1, timeout_s=10)
    jobs = await shop.container.automations.jobs(shop.customer_id)
    assert [j.kind for j in jobs] == [AutomationKind.ORDER_CONFIRMATION]
    assert len(texts_to(smsc, PHONE)) == 1


def checkout(**extra: object) -> dict[str, object]:
    return {
        "token": "ck-42", "phone": PHONE, "abandoned_checkout_url": "https://acme.test/r/ck-42",
        "customer": {"id": 77, "first_name": "Asha",
                     "sms_marketing_consent": {"state": "subscribed"}},
        **extra,
    }  # fmt: skip


async def test_abandoned_checkout_gets_one_reminder_after_the_delay(
    shop: Harness, smsc: NpmSmsc, clock: FrozenClock
) -> None:
    now = clock.now().isoformat()
    for topic in ("checkouts/create", "checkouts/update", "checkouts/update"):
        webhook_id = str(uuid.uuid4())
        await shop.emit(topic, checkout(updated_at=now), webhook_id=webhook_id)
        await processed(shop, webhook_id)
    assert texts_to(smsc, PHONE) == []  # not before the delay
    clock.advance(REMINDER_DELAY_S + 60)

    async def reminded() -> bool:
        return len(texts_to(smsc, PHONE)) >= 1

    await eventually(reminded)
    [text] = texts_to(smsc, PHONE)
    assert "https://acme.test/r/ck-42" in text


async def test_checkout_completed_in_time_sends_no_reminder(
    shop: Harness, smsc: NpmSmsc, clock: FrozenClock
) -> None:
    now = clock.now().isoformat()
    started = str(uuid.uuid4())
    await shop.emit("checkouts/create", checkout(updated_at=now), webhook_id=started)
    await processed(shop, started)
    clock.advance(20 * 60)
    completed = str(uuid.uuid4())
    await shop.emit(
        "checkouts/update", checkout(updated_at=now, completed_at=clock.now().isoformat()),
        webhook_id=completed,
    )  # fmt: skip
    await processed(shop, completed)
    clock.advance(REMINDER_DELAY_S)
    [job] = await shop.container.automations.jobs(shop.customer_id)
    assert job.kind is AutomationKind.ABANDONED_CHECKOUT
    assert job.status is JobStatus.CANCELLED
    await shop.container.automations.run_due("test-runner")  # what the runner would find
    assert texts_to(smsc, PHONE) == []


async def test_uninstall_stops_the_shops_pending_reminders(
    shop: Harness, smsc: NpmSmsc, clock: FrozenClock
) -> None:
    started = str(uuid.uuid4())
    await shop.emit(
        "checkouts/create", checkout(updated_at=clock.now().isoformat()), webhook_id=started
    )
    await processed(shop, started)
    assert [j.status for j in await shop.container.automations.jobs(shop.customer_id)] == [
        JobStatus.PENDING
    ]
    gone = str(uuid.uuid4())
    await shop.emit("app/uninstalled", {"id": 1, "domain": "acme.myshopify.com"}, webhook_id=gone)
    await processed(shop, gone)
    assert await shop.container.automations.list(shop.customer_id) == []
    clock.advance(REMINDER_DELAY_S + 60)
    await shop.container.automations.run_due("test-runner")
    assert all(
        j.status is not JobStatus.PENDING
        for j in await shop.container.automations.jobs(shop.customer_id)
    )
    assert texts_to(smsc, PHONE) == []
