"""The console's automation, CleverTap and fraud pages act through their services, per customer."""

from __future__ import annotations

import httpx
from tests.e2e.test_console import SAME, _login, _token
from tests.e2e.test_console import web as web  # fixture

from switchboard.automations.rules import AutomationKind
from switchboard.bootstrap import Container


async def test_a_customer_turns_an_automation_off_and_edits_its_text(
    web: httpx.AsyncClient, container: Container, customer: str
) -> None:
    rule = await container.automations.create(customer, AutomationKind.ORDER_CONFIRMATION, {})
    other = await container.accounts.create_customer(
        email="other@example.com", password="other password 1", customer_id="C-OTHER"
    )
    foreign = await container.automations.create(other.id, AutomationKind.WELCOME, {})
    await _login(web, "dev@example.com")
    page = await web.get("/console/automations")
    assert page.status_code == 200
    assert rule.name in page.text
    assert foreign.id not in page.text

    token = await _token(web, "/console/automations")
    saved = await web.post(
        f"/console/automations/{rule.id}",
        data={"csrf_token": token, "template": "Thanks for {{order.name}}!"},
        headers=SAME,
        follow_redirects=True,
    )
    assert saved.status_code == 200
    assert "is off" in saved.text
    changed = await container.automations.get(customer, rule.id)
    assert (changed.enabled, changed.template) == (False, "Thanks for {{order.name}}!")

    # another customer's rule answers as unknown, and stays as it was
    refused = await web.post(
        f"/console/automations/{foreign.id}",
        data={"csrf_token": token},
        headers=SAME,
        follow_redirects=True,
    )
    assert "no automation" in refused.text
    assert (await container.automations.get(other.id, foreign.id)).enabled


async def test_clevertap_settings_are_saved_and_a_private_callback_refused(
    web: httpx.AsyncClient, container: Container, customer: str
) -> None:
    await _login(web, "dev@example.com")
    token = await _token(web, "/console/clevertap")
    saved = await web.post(
        "/console/clevertap",
        data={"csrf_token": token, "defaultCountryCode": "44", "replyNumbers": "+447911123456"},
        headers=SAME,
        follow_redirects=True,
    )
    assert "settings saved" in saved.text
    current = await container.clevertap.settings(customer)
    assert current.default_country_code == "44"
    assert len(current.reply_numbers) == 1
    refused = await web.post(
        "/console/clevertap",
        data={"csrf_token": token, "callbackUrl": "http://10.0.0.7/hook"},
        headers=SAME,
        follow_redirects=True,
    )
    assert 'role="alert"' in refused.text
    assert (await container.clevertap.settings(customer)).callback_url is None


async def test_the_fraud_page_lists_nothing_for_a_new_customer_and_keeps_its_safe_list(
    web: httpx.AsyncClient, container: Container, customer: str
) -> None:
    await _login(web, "dev@example.com")
    page = await web.get("/console/fraud")
    assert "Nothing blocked or flagged." in page.text
    token = await _token(web, "/console/fraud")
    saved = await web.post(
        "/console/fraud/safe-list",
        data={"csrf_token": token, "entries": "+919876543210 +44770090"},
        headers=SAME,
        follow_redirects=True,
    )
    assert "2 entries" in saved.text
    assert sorted(await container.fraud.safe_list(customer)) == ["+44770090", "+919876543210"]
    unsigned = await web.post("/console/fraud/safe-list", data={"entries": ""}, headers=SAME)
    assert unsigned.status_code == 403
    assert len(await container.fraud.safe_list(customer)) == 2
