"""Automations end to end: events in (service and POST /api/v1/events), SMS out via the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from tests.conftest import SettingsFactory
from tests.e2e.conftest import PASSWORD, eventually

from switchboard.automations.events import (
    CHECKOUT_COMPLETED,
    CHECKOUT_STARTED,
    ORDER_CREATED,
    Event,
)
from switchboard.automations.rules import AutomationKind, JobStatus
from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.services.messaging import MessageRequest
from switchboard.storage.sql.automations import SqlAutomationStore
from switchboard.testing.client import MessageCentralClient

PHONE = "+919876543210"
SHOP = "shopify:acme.myshopify.com"
FIELDS = {
    "order": {"name": "#1001"},
    "customer": {"first_name": "Asha"},
    "checkout_url": "https://acme.example/c/abc",
}


@pytest.fixture
def clock() -> FrozenClock:
    # 10:00 UTC (15:30 in Kolkata): outside the default quiet hours wherever a test looks
    return FrozenClock(datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0))


# The runners in these tests run when told to (the background one once at start): no race
# with the test's own `run_once` for who leases a job.
QUIET_RUNNER = {"automations": {"poll_interval_s": 60}}


@pytest.fixture
async def container(make_settings: SettingsFactory, clock: FrozenClock) -> AsyncIterator[Container]:
    built = build_container(make_settings(**QUIET_RUNNER), clock=clock)
    await built.start(run_workers=True)
    yield built
    await built.stop()


def event(account_id: str, name: str, key: str, clock: FrozenClock, **extra: Any) -> Event:
    values: dict[str, Any] = {
        "phone": PHONE, "source": SHOP, "consent": True, "fields": FIELDS,
        "subject": "checkout:abc",
    }  # fmt: skip
    values.update(extra)
    return Event(account_id=account_id, name=name, key=key, occurred_at=clock.now(), **values)


async def sent_texts(container: Container, account_id: str) -> list[str]:
    return [entry["text"] for entry in await container.outbox.entries(account_id)]


async def jobs_of(container: Container, account_id: str) -> dict[str, JobStatus]:
    return {job.kind.value: job.status for job in await container.automations.jobs(account_id)}


async def test_order_created_event_sends_the_confirmation_through_the_sandbox(
    mc: MessageCentralClient, client: httpx.AsyncClient, container: Container
) -> None:
    created = await client.post(
        "/api/v1/automations",
        json={"kind": "order_confirmation", "senderId": "ACME"},
        headers=mc.headers(),
    )
    assert created.status_code == 200, created.text
    answer = await client.post(
        "/api/v1/events",
        json={"name": "order.created", "key": "order-1001", "phone": PHONE, "fields": FIELDS},
        headers=mc.headers(),
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["duplicate"] is False
    [job] = data["jobs"]
    assert job["status"] == "SENT"
    assert job["messageId"]

    async def delivered() -> bool:
        return bool(await sent_texts(container, mc.customer_id))

    await eventually(delivered)
    [entry] = await container.outbox.entries(mc.customer_id)
    assert entry["destination"] == PHONE
    assert entry["text"] == (
        "Hi Asha, thanks for your order #1001! We will text you when it ships."
    )
    listed = await client.get("/api/v1/automations/jobs?status=SENT", headers=mc.headers())
    assert [j["messageId"] for j in listed.json()["data"]["jobs"]] == [job["messageId"]]


async def test_abandoned_checkout_sends_one_reminder_after_the_delay_and_no_more(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    automations = container.automations
    await automations.create(customer, AutomationKind.ABANDONED_CHECKOUT, {"source": SHOP})
    ids = await automations.publish(event(customer, CHECKOUT_STARTED, "co-1", clock))
    assert len(ids) == 1  # a delayed job, no message yet
    clock.advance(59 * 60)
    assert await container.automation_runner.run_once() == 0
    clock.advance(61)
    assert await container.automation_runner.run_once() == 1

    async def one_sent() -> bool:
        return len(await sent_texts(container, customer)) == 1

    await eventually(one_sent)
    assert await container.automation_runner.run_once() == 0
    await asyncio.sleep(0.3)  # let the dispatcher send anything a second run had queued
    assert await sent_texts(container, customer) == [
        "Hi Asha, you left something in your cart. Complete your order: https://acme.example/c/abc"
    ]
    assert await jobs_of(container, customer) == {"abandoned_checkout": JobStatus.SENT}


@pytest.mark.parametrize("closer", [CHECKOUT_COMPLETED, ORDER_CREATED, "clear_subject"])
async def test_a_checkout_completed_within_the_delay_cancels_the_reminder(
    container: Container, customer: str, clock: FrozenClock, closer: str
) -> None:
    automations = container.automations
    await automations.create(customer, AutomationKind.ABANDONED_CHECKOUT, {})
    await automations.publish(event(customer, CHECKOUT_STARTED, "co-1", clock))
    clock.advance(30 * 60)
    if closer == "clear_subject":
        assert await automations.clear_subject(customer, "checkout:abc") == 1
    else:
        await automations.publish(event(customer, closer, "done-1", clock))
    clock.advance(31 * 60)
    assert await container.automation_runner.run_once() == 0
    [job] = await automations.jobs(customer)
    assert job.status is JobStatus.CANCELLED
    assert await sent_texts(container, customer) == []


async def test_a_checkout_update_arriving_after_its_order_sends_no_reminder(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    automations = container.automations
    await automations.create(customer, AutomationKind.ABANDONED_CHECKOUT, {})
    await automations.publish(event(customer, ORDER_CREATED, "order-1", clock))
    await automations.publish(event(customer, CHECKOUT_STARTED, "co-late", clock))
    clock.advance(61 * 60)
    assert await container.automation_runner.run_once() == 1  # leased, re-checked, cancelled
    assert await jobs_of(container, customer) == {"abandoned_checkout": JobStatus.CANCELLED}
    assert await sent_texts(container, customer) == []


async def test_quiet_hours_move_a_send_to_the_end_of_the_window_in_the_event_timezone(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    automations = container.automations
    await automations.create(
        customer, AutomationKind.WELCOME, {"quiet_hours": "21:00-09:00", "delay": timedelta(0)}
    )
    # 10:00 UTC is 19:00 in Tokyo: move to 22:00 there, inside the quiet hours
    clock.advance(3 * 3600)
    publication = await automations.publish_event(
        event(customer, "customer.created", "cust-1", clock, timezone="Asia/Tokyo")
    )
    [job] = publication.jobs
    assert job.status is JobStatus.PENDING
    local_due = job.due_at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local_due.hour, local_due.minute) == (9, 0)
    assert job.due_at - clock.now() == timedelta(hours=11)
    clock.advance(11 * 3600 - 60)
    assert await container.automation_runner.run_once() == 0
    clock.advance(60)
    assert await container.automation_runner.run_once() == 1
    assert await jobs_of(container, customer) == {"welcome": JobStatus.SENT}


async def test_promotional_automation_skips_a_recipient_without_consent_and_records_it(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    automations = container.automations
    await automations.create(customer, AutomationKind.WELCOME, {"quiet_hours": None})
    await automations.create(customer, AutomationKind.ORDER_CONFIRMATION, {})
    for key, consent in (("c-none", None), ("c-no", False)):
        publication = await automations.publish_event(
            event(customer, "customer.created", key, clock, consent=consent)
        )
        [job] = publication.jobs
        assert job.status is JobStatus.SKIPPED
        assert job.reason is not None
        assert "consent" in job.reason
    # a transactional message needs no marketing consent
    order = await automations.publish_event(
        event(customer, ORDER_CREATED, "o-1", clock, consent=False)
    )
    assert [job.status for job in order.jobs] == [JobStatus.SENT]
    skipped = await automations.jobs(customer, status="skipped")
    assert len(skipped) == 2

    async def only_the_order() -> bool:
        return len(await sent_texts(container, customer)) == 1

    await eventually(only_the_order)


async def test_a_pending_job_survives_a_restart_and_fires_once(
    make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    first = build_container(make_settings(**QUIET_RUNNER), clock=clock)
    await first.start(run_workers=True)
    account = await first.accounts.create_customer(
        email="dev@example.com", password=PASSWORD, customer_id="C-RESTART"
    )
    await first.automations.create(account.id, AutomationKind.ABANDONED_CHECKOUT, {})
    await first.automations.publish(event(account.id, CHECKOUT_STARTED, "co-1", clock))
    await first.stop()

    clock.advance(3600)
    second = build_container(make_settings(**QUIET_RUNNER), clock=clock)
    await second.start(run_workers=True)
    try:

        async def fired() -> bool:
            return len(await sent_texts(second, account.id)) == 1

        await eventually(fired)  # the new container's own runner found the job
        assert await second.automation_runner.run_once() == 0
        assert await jobs_of(second, account.id) == {"abandoned_checkout": JobStatus.SENT}
    finally:
        await second.stop()


async def test_five_concurrent_identical_publishes_send_one_sms(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    automations = container.automations
    await automations.create(customer, AutomationKind.ORDER_CONFIRMATION, {})
    same = event(customer, ORDER_CREATED, "webhook-42", clock)
    results = await asyncio.gather(*(automations.publish(same) for _ in range(5)))
    assert sorted(len(ids) for ids in results) == [0, 0, 0, 0, 2]  # one job + its message

    async def sent() -> bool:
        return len(await sent_texts(container, customer)) >= 1

    await eventually(sent)
    again = await automations.publish(same)  # Shopify's retry hours later
    assert again == []
    await asyncio.sleep(0.3)
    assert len(await sent_texts(container, customer)) == 1
    assert len(await automations.jobs(customer)) == 1


async def test_two_runners_racing_for_a_due_job_send_it_once(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    automations = container.automations
    await automations.create(customer, AutomationKind.ABANDONED_CHECKOUT, {})
    for n in range(6):
        await automations.publish(
            event(customer, CHECKOUT_STARTED, f"co-{n}", clock, subject=f"checkout:{n}")
        )
    clock.advance(3600)
    leased = await asyncio.gather(
        *(automations.run_due(f"runner-{n}") for n in range(3)),
        container.automation_runner.run_once(),
    )
    assert sum(leased) == 6

    async def all_sent() -> bool:
        return len(await sent_texts(container, customer)) == 6

    await eventually(all_sent)
    jobs = await automations.jobs(customer)
    assert {job.status for job in jobs} == {JobStatus.SENT}
    assert len({job.message_id for job in jobs}) == 6


async def test_a_second_customer_cannot_see_or_change_anothers_automations(
    mc: MessageCentralClient, client: httpx.AsyncClient, container: Container
) -> None:
    created = await client.post(
        "/api/v1/automations", json={"kind": "welcome"}, headers=mc.headers()
    )
    automation_id = created.json()["data"]["id"]
    await client.post(
        "/api/v1/events",
        json={"name": "customer.created", "phone": PHONE, "consent": True},
        headers=mc.headers(),
    )
    other = await container.accounts.create_customer(
        email="other@example.com", password=PASSWORD, customer_id="C-OTHER"
    )
    theirs = {"authToken": container.tokens.issue(other)}
    path = f"/api/v1/automations/{automation_id}"
    assert (await client.get(path, headers=theirs)).status_code == 400
    changed = await client.put(path, json={"enabled": False}, headers=theirs)
    assert changed.status_code == 400
    assert "no automation" in changed.json()["errorMessage"]
    assert (await client.delete(path, headers=theirs)).status_code == 400
    listed = await client.get("/api/v1/automations", headers=theirs)
    assert listed.json()["data"]["automations"] == []
    jobs = await client.get("/api/v1/automations/jobs", headers=theirs)
    assert jobs.json()["data"]["jobs"] == []
    # their event triggers none of the first customer's automations
    answer = await client.post(
        "/api/v1/events",
        json={"name": "customer.created", "phone": PHONE, "consent": True},
        headers=theirs,
    )
    assert answer.json()["data"]["jobs"] == []
    mine = await client.get(path, headers=mc.headers())
    assert mine.json()["data"]["enabled"] is True


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/api/v1/events", {"name": "order.created", "phone": "98765"}, "E.164"),
        ("/api/v1/events", {"name": "", "phone": PHONE}, "name"),
        ("/api/v1/events", {"name": "x", "timezone": "Mars/Base"}, "time zone"),
        ("/api/v1/events", {"name": "x", "fields": "nope"}, "fields"),
        ("/api/v1/events", {"name": "x", "colour": "red"}, "colour"),
        ("/api/v1/automations", {"kind": "birthday"}, "kind"),
        ("/api/v1/automations", {"kind": "welcome", "quietHours": "9-5"}, "HH:MM"),
        ("/api/v1/automations", {"kind": "custom", "template": "hi"}, "eventName"),
        ("/api/v1/automations", {"kind": "welcome", "senderId": "A" * 20}, "senderId"),
        ("/api/v1/automations", {"kind": "welcome", "messageType": "OTP"}, "messageType"),
        ("/api/v1/automations", {"kind": "welcome", "delayDays": 90}, "delay"),
        (
            "/api/v1/automations",
            {"kind": "welcome", "eventName": "order.created"},
            "kind custom",
        ),
    ],
)
async def test_bad_input_is_refused_with_400_and_a_readable_reason(
    mc: MessageCentralClient, client: httpx.AsyncClient, path: str, body: Any, needle: str
) -> None:
    answer = await client.post(path, json=body, headers=mc.headers())
    assert answer.status_code == 400, answer.text
    payload = answer.json()
    assert payload["responseCode"] == 400
    assert needle in payload["errorMessage"]


async def test_unknown_job_status_filter_is_refused(
    mc: MessageCentralClient, client: httpx.AsyncClient
) -> None:
    answer = await client.get("/api/v1/automations/jobs?status=DONE", headers=mc.headers())
    assert answer.status_code == 400
    assert "PENDING" in answer.json()["errorMessage"]


async def test_update_disable_preview_and_delete_through_the_api(
    mc: MessageCentralClient, client: httpx.AsyncClient, container: Container
) -> None:
    created = await client.post(
        "/api/v1/automations",
        json={"kind": "custom", "eventName": "deal.won", "template": "Hi {{person.name}}"},
        headers=mc.headers(),
    )
    automation = created.json()["data"]
    path = f"/api/v1/automations/{automation['id']}"
    assert automation["messageType"] == "TRANSACTIONAL"
    updated = await client.put(
        path, json={"template": "Thanks {{person.name}} for {{deal.title}}"}, headers=mc.headers()
    )
    assert updated.json()["data"]["template"] == "Thanks {{person.name}} for {{deal.title}}"
    preview = await client.post(
        f"{path}/preview", json={"fields": {"person": {"name": "Ravi"}}}, headers=mc.headers()
    )
    assert preview.json()["data"] == {
        "text": "Thanks Ravi for ",
        "missingVariables": ["deal.title"],
    }
    await client.put(path, json={"enabled": False}, headers=mc.headers())
    answer = await client.post(
        "/api/v1/events", json={"name": "deal.won", "phone": PHONE}, headers=mc.headers()
    )
    assert answer.json()["data"]["jobs"] == []
    assert (await client.delete(path, headers=mc.headers())).status_code == 200
    assert (await client.get(path, headers=mc.headers())).status_code == 400


async def test_install_defaults_makes_a_new_shop_work_at_once_and_only_once(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    automations = container.automations
    made = await automations.install_defaults(customer, source=SHOP, sender_id="ACME")
    assert {x.kind for x in made} == set(AutomationKind) - {AutomationKind.CUSTOM}
    assert await automations.install_defaults(customer, source=SHOP) == []
    # an event from another shop triggers none of them
    other = await automations.publish_event(
        event(customer, ORDER_CREATED, "o-x", clock, source="shopify:other.myshopify.com")
    )
    assert other.jobs == []
    mine = await automations.publish_event(event(customer, ORDER_CREATED, "o-1", clock))
    assert [job.status for job in mine.jobs] == [JobStatus.SENT]


async def test_forget_recipient_erases_events_and_pending_jobs_about_a_person(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    automations = container.automations
    await automations.create(customer, AutomationKind.ABANDONED_CHECKOUT, {})
    await automations.create(customer, AutomationKind.ORDER_CONFIRMATION, {})
    await automations.publish(event(customer, ORDER_CREATED, "o-1", clock, subject="order:1"))
    await automations.publish(event(customer, CHECKOUT_STARTED, "co-1", clock))
    erased = await automations.forget_recipient(customer, phone=PHONE, email=None)
    assert erased == 3  # two events and the pending reminder
    [sent] = await automations.jobs(customer)
    assert sent.status is JobStatus.SENT
    assert sent.phone is None
    assert dict(sent.context) == {}
    clock.advance(3600)
    assert await container.automation_runner.run_once() == 0
    # the erased key is gone: the same webhook again is a new event
    assert await automations.publish(event(customer, ORDER_CREATED, "o-1", clock)) != []


async def test_an_api_event_without_a_key_is_never_deduplicated(
    mc: MessageCentralClient, client: httpx.AsyncClient, container: Container
) -> None:
    await container.automations.create(mc.customer_id, AutomationKind.ORDER_CONFIRMATION, {})
    body = {"name": "order.created", "phone": PHONE, "fields": FIELDS}
    first = (await client.post("/api/v1/events", json=body, headers=mc.headers())).json()
    second = (await client.post("/api/v1/events", json=body, headers=mc.headers())).json()
    assert first["data"]["key"] != second["data"]["key"]
    keyed = {**body, "key": "k1"}
    third = (await client.post("/api/v1/events", json=keyed, headers=mc.headers())).json()
    fourth = (await client.post("/api/v1/events", json=keyed, headers=mc.headers())).json()
    assert len(third["data"]["jobs"]) == 1
    assert fourth["data"] == {"eventId": None, "key": "k1", "duplicate": True, "jobs": []}


async def test_a_runner_whose_lease_was_taken_over_cannot_send_the_job_again(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    """A runner stalled past its lease: another takes the job and sends it; the first one's
    late send then matches nothing, so the job still makes exactly one message."""
    automations = container.automations
    store = SqlAutomationStore(container.database, container.queue)
    await automations.create(customer, AutomationKind.ABANDONED_CHECKOUT, {})
    await automations.publish(event(customer, CHECKOUT_STARTED, "co-1", clock))
    clock.advance(3600)
    [stalled] = await store.claim_due("stalled", clock.now(), 60, limit=10)
    clock.advance(61)
    assert await automations.run_due("healthy") == 1
    account = await container.accounts.get(customer)
    late = container.messaging.prepare(
        account,
        MessageRequest(
            flow_type="SMS", message="late", sender_id="ACME", message_type="PROMOTIONAL",
            country_code="91", mobile_number="9876543210",
        ),
    )  # fmt: skip
    assert not await store.send_job(stalled.id, "stalled", late, clock.now())

    async def sent() -> bool:
        return len(await sent_texts(container, customer)) == 1

    await eventually(sent)
    await asyncio.sleep(0.3)
    assert len(await sent_texts(container, customer)) == 1
    [job] = await automations.jobs(customer)
    assert job.status is JobStatus.SENT
    assert job.attempts == 2


async def test_a_send_the_wallet_cannot_pay_fails_the_job_and_a_paid_one_is_charged_once(
    make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    settings = make_settings(billing={"enabled": True, "default_price": "0.0100"}, **QUIET_RUNNER)
    built = build_container(settings, clock=clock)
    await built.start(run_workers=True)
    try:
        account = await built.accounts.create_customer(
            email="dev@example.com", password=PASSWORD, customer_id="C-BILLED"
        )
        automations = built.automations
        await automations.create(account.id, AutomationKind.ORDER_CONFIRMATION, {})
        broke = await automations.publish_event(event(account.id, ORDER_CREATED, "o-1", clock))
        [job] = broke.jobs
        assert job.status is JobStatus.FAILED
        assert job.reason is not None
        assert "insufficient balance" in job.reason
        await built.billing.top_up(account.id, "0.0500", reference="test")
        paid = await automations.publish_event(event(account.id, ORDER_CREATED, "o-2", clock))
        assert [x.status for x in paid.jobs] == [JobStatus.SENT]
        assert (await built.billing.balance(account.id)).wallet.balance == 400  # 0.0400 USD
        assert len(await automations.jobs(account.id, status="FAILED")) == 1
    finally:
        await built.stop()


async def test_a_whatsapp_automation_sends_on_the_whatsapp_channel(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    automations = container.automations
    await automations.create(
        customer, AutomationKind.SHIPPING_UPDATE, {"channel": "whatsapp", "sender_id": None}
    )
    fields = {**FIELDS, "tracking_url": "https://track.example/9"}
    publication = await automations.publish_event(
        event(customer, "shipment.updated", "f-1", clock, fields=fields)
    )
    assert [job.status for job in publication.jobs] == [JobStatus.SENT]

    async def sent() -> bool:
        return len(await container.outbox.entries(customer)) == 1

    await eventually(sent)
    [entry] = await container.outbox.entries(customer)
    assert entry["channel"] == "WHATSAPP"
    assert entry["text"].endswith("Track it: https://track.example/9")


async def test_events_past_their_retention_are_pruned_and_recent_ones_kept(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    automations = container.automations
    await automations.create(customer, AutomationKind.ORDER_CONFIRMATION, {})
    await automations.publish(event(customer, ORDER_CREATED, "old", clock))
    clock.advance(80 * 86400)
    await automations.publish(event(customer, ORDER_CREATED, "recent", clock))
    clock.advance(11 * 86400)  # "old" is 91 days old, past the default 90
    assert await automations.prune_events() == 1
    assert await automations.publish(event(customer, ORDER_CREATED, "recent", clock)) == []
    assert len(await automations.jobs(customer)) == 2  # the jobs' history stays


async def test_quiet_hours_fall_back_to_the_customers_timezone_and_missing_variables_are_noted(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    await container.accounts.update(customer, settings={"timezone": "Asia/Kolkata"})
    automations = container.automations
    await automations.create(customer, AutomationKind.WELCOME, {})  # quiet 21:00-09:00
    clock.advance(6 * 3600)  # 16:00 UTC = 21:30 in Kolkata
    publication = await automations.publish_event(
        event(customer, "customer.created", "c-1", clock, fields={})
    )
    [job] = publication.jobs
    assert job.due_at == clock.now() + timedelta(hours=11, minutes=30)  # 09:00 there
    clock.advance(11.5 * 3600)
    assert await container.automation_runner.run_once() == 1
    [sent] = await automations.jobs(customer)
    assert sent.status is JobStatus.SENT
    assert sent.reason == "rendered without customer.first_name"


async def test_a_job_whose_runners_keep_dying_fails_after_max_attempts(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    automations = container.automations
    store = SqlAutomationStore(container.database, container.queue)
    await automations.create(customer, AutomationKind.ABANDONED_CHECKOUT, {})
    await automations.publish(event(customer, CHECKOUT_STARTED, "co-1", clock))
    clock.advance(3600)
    for attempt in range(container.settings.automations.max_attempts):
        [job] = await store.claim_due(f"dies-{attempt}", clock.now(), 60, limit=10)
        clock.advance(61)  # that runner died: its lease runs out
    assert await container.automation_runner.run_once() == 1
    [job] = await automations.jobs(customer)
    assert job.status is JobStatus.FAILED
    assert job.reason == "gave up after 5 attempts"
    assert await sent_texts(container, customer) == []


async def test_forget_source_erases_a_shops_rules_events_and_unsent_jobs(
    container: Container, customer: str, clock: FrozenClock
) -> None:
    automations = container.automations
    await automations.install_defaults(customer, source=SHOP)
    kept = await automations.create(customer, AutomationKind.CUSTOM, {
        "event_name": "deal.won", "template": "Thanks!", "source": "pipedrive",
    })  # fmt: skip
    await automations.publish(event(customer, ORDER_CREATED, "o-1", clock, subject="order:1"))
    await automations.publish(event(customer, CHECKOUT_STARTED, "co-1", clock))
    # 5 rules + 1 pending reminder + 2 events
    assert await automations.forget_source(customer, SHOP) == 8
    assert [x.id for x in await automations.list(customer)] == [kept.id]
    [sent] = await automations.jobs(customer)
    assert sent.status is JobStatus.SENT
    assert sent.phone is None
    assert dict(sent.context) == {}
    clock.advance(3600)
    assert await container.automation_runner.run_once() == 0
