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
