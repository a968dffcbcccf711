"""The web console over HTTP: login, CSRF refusal, revocation, lockout, and tenant isolation."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from tests.e2e.conftest import PASSWORD, eventually
from tests.e2e.test_messagenow import workbook

from switchboard.api.app import create_app
from switchboard.bootstrap import Container
from switchboard.clock import FrozenClock
from switchboard.services.messaging import MessageRequest
from switchboard.services.verification import SendRequest
from switchboard.storage.sql.tables import console_sessions

SAME = {"Sec-Fetch-Site": "same-origin"}
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@pytest.fixture
async def web(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    # a loopback base URL: the console sets its cookie without Secure on plain http there
    app = create_app(container, manage_lifecycle=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
    ) as http:
        yield http


async def _login(web: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await web.post(
        "/console/login", data={"email": email, "password": password}, headers=SAME
    )


async def _token(web: httpx.AsyncClient, path: str = "/console/") -> str:
    page = await web.get(path)
    found = _CSRF.search(page.text)
    assert found, page.text[:300]
    return found.group(1)


async def test_login_shows_the_customer_id_and_sets_a_hardened_cookie(
    web: httpx.AsyncClient, customer: str
) -> None:
    response = await _login(web, "DEV@example.com")
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/console" in cookie
    home = await web.get("/console/")
    assert customer in home.text
    assert PASSWORD not in home.text


async def test_the_cookie_is_secure_off_loopback(container: Container, customer: str) -> None:
    app = create_app(container, manage_lifecycle=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://console.example.com"
    ) as http:
        response = await _login(http, "dev@example.com")
    assert "secure" in response.headers["set-cookie"].lower()


async def test_a_wrong_password_is_refused_without_a_session(
    web: httpx.AsyncClient, customer: str
) -> None:
    response = await _login(web, "dev@example.com", "wrong password")
    assert response.status_code == 401
    assert "invalid" in response.text
    assert "set-cookie" not in response.headers
    assert (await web.get("/console/")).status_code == 303


async def test_a_cross_site_post_is_refused_even_with_the_token(
    web: httpx.AsyncClient, customer: str, container: Container
) -> None:
    await _login(web, "dev@example.com")
    token = await _token(web)
    refused = await web.post(
        "/console/keys", data={"name": "evil", "csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )  # fmt: skip
    assert refused.status_code == 403
    no_metadata = await web.post(
        "/console/keys", data={"name": "evil", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )  # fmt: skip
    assert no_metadata.status_code == 403
    assert await container.integration_keys.list(customer) == []


async def test_a_same_origin_post_without_the_token_is_refused(
    web: httpx.AsyncClient, customer: str, container: Container
) -> None:
    await _login(web, "dev@example.com")
    refused = await web.post("/console/keys", data={"name": "CRM"}, headers=SAME)
    assert refused.status_code == 403
    assert await container.integration_keys.list(customer) == []
    token = await _token(web)
    created = await web.post(
        "/console/keys", data={"name": "CRM", "csrf_token": token}, headers=SAME
    )
    assert (created.status_code, created.headers["location"]) == (303, "/console/")
    shown = await web.get("/console/")
    plain = re.search(r'<code id="new-key">(sbk_[^<]+)</code>', shown.text)
    assert plain, "the new key is shown once"
    assert "sbk_" not in created.headers["location"]
    assert plain.group(1) not in (await web.get("/console/")).text


async def test_a_login_from_another_site_is_refused(web: httpx.AsyncClient, customer: str) -> None:
    response = await web.post(
        "/console/login", data={"email": "dev@example.com", "password": PASSWORD},
        headers={"Sec-Fetch-Site": "cross-site"},
    )  # fmt: skip
    assert response.status_code == 403


async def test_a_password_change_ends_every_console_session(
    web: httpx.AsyncClient, customer: str, container: Container
) -> None:
    await _login(web, "dev@example.com")
    assert (await web.get("/console/")).status_code == 200
    await container.accounts.update(customer, password="another long password")
    response = await web.get("/console/")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login"


async def test_logout_revokes_the_session_on_the_server(
    web: httpx.AsyncClient, customer: str
) -> None:
    await _login(web, "dev@example.com")
    cookie = web.cookies.get("sb_console")
    token = await _token(web)
    assert (
        await web.post("/console/logout", data={"csrf_token": token}, headers=SAME)
    ).status_code == 303
    web.cookies.set("sb_console", cookie or "", domain="127.0.0.1", path="/console")
    assert (await web.get("/console/")).status_code == 303


async def test_repeated_wrong_passwords_lock_the_console_login_too(
    web: httpx.AsyncClient, customer: str
) -> None:
    for _ in range(10):
        assert (await _login(web, "dev@example.com", "wrong password")).status_code == 401
    locked = await _login(web, "dev@example.com")
    assert locked.status_code >= 400
    assert "locked" in locked.text
    assert "set-cookie" not in locked.headers


async def test_another_customer_cannot_open_this_ones_pages_by_url(
    web: httpx.AsyncClient, customer: str, container: Container
) -> None:
    await container.accounts.create_customer(email="other@example.com", password=PASSWORD)
    await _login(web, "dev@example.com")
    token = await _token(web, "/console/send")
    sent = await web.post(
        "/console/send/message",
        data={"csrf_token": token, "countryCode": "91", "mobileNumber": "9999999999",
              "senderId": "ACME", "message": "hello", "messageType": "TRANSACTIONAL"},
        headers=SAME,
    )  # fmt: skip
    assert sent.status_code == 303, sent.text
    message_path = sent.headers["location"]
    otp = await web.post(
        "/console/send/otp",
        data={"csrf_token": token, "countryCode": "91", "mobileNumber": "9999999998"},
        headers=SAME,
    )
    assert otp.status_code == 303, otp.text
    verification_path = otp.headers["location"]
    accepted = await container.messaging.send(
        await container.accounts.get(customer),
        MessageRequest(
            flow_type="SMS", message="hi", sender_id="ACME", phone_numbers="91 9999999997"
        ),
    )
    campaign_path = f"/console/campaigns/{accepted.campaign_id}"
    for path in (message_path, verification_path, campaign_path):
        assert (await web.get(path)).status_code == 200, path

    other = httpx.AsyncClient(transport=web._transport, base_url="http://127.0.0.1:8080")
    async with other:
        await _login(other, "other@example.com")
        for path in (message_path, verification_path, campaign_path, campaign_path + "/report.csv"):
            response = await other.get(path)
            assert response.status_code == 404, path
            assert "9999999" not in response.text
        progress = await other.get(campaign_path + "/progress")
        assert progress.status_code == 404
        listing = await other.get("/console/messages")
        assert "9999999" not in listing.text


async def test_the_dashboard_counts_deliveries_from_the_rollup(
    web: httpx.AsyncClient, customer: str, container: Container
) -> None:
    await _login(web, "dev@example.com")
    token = await _token(web, "/console/send")
    for number in ("9999999991", "9999999992"):
        response = await web.post(
            "/console/send/message",
            data={"csrf_token": token, "countryCode": "91", "mobileNumber": number,
                  "senderId": "ACME", "message": "hello", "messageType": "TRANSACTIONAL"},
            headers=SAME,
        )  # fmt: skip
        assert response.status_code == 303

    async def delivered() -> bool:
        board = await container.console.statistics.dashboard(customer)  # type: ignore[union-attr]
        return sum(day["delivered"] for day in board.by_day.values()) == 2

    await eventually(delivered)
    page = await web.get("/console/dashboard")
    assert '<strong id="total-sent">2</strong>' in page.text
    assert '<strong id="total-delivered">2</strong>' in page.text


async def test_an_operator_tops_up_a_customer(
    web: httpx.AsyncClient, customer: str, container: Container
) -> None:
    assert container.console is not None
    await container.console.operators.create("ops@example.com", "operator password 1")
    response = await web.post(
        "/console/admin/login",
        data={"email": "ops@example.com", "password": "operator password 1"}, headers=SAME,
    )  # fmt: skip
    assert response.status_code == 303
    token = await _token(web, f"/console/admin/customers/{customer}")
    topped = await web.post(
        f"/console/admin/customers/{customer}/topup",
        data={"csrf_token": token, "amount": "25.50", "reference": "invoice 7"}, headers=SAME,
        follow_redirects=True,
    )  # fmt: skip
    assert topped.status_code == 200, topped.text
    assert "Done: topup." in topped.text
    balance = await container.billing.balance(customer)
    assert balance.wallet.balance == container.billing.currency.to_minor("25.50")
    # a customer session is not an operator session
    assert (await web.get("/console/")).status_code == 303


async def test_otp_conversion_counts_sent_and_verified_codes(
    web: httpx.AsyncClient, customer: str, container: Container
) -> None:
    account = await container.accounts.get(customer)
    started = await container.verification.start(
        account, SendRequest(country_code="91", mobile_number="9876543210", flow_type="SMS")
    )
    await container.verification.start(
        account, SendRequest(country_code="91", mobile_number="9876543211", flow_type="SMS")
    )

    async def both_sent() -> bool:
        return len(await container.outbox.entries(customer)) == 2

    await eventually(both_sent)
    entries = await container.outbox.entries(customer)
    mine = next(e for e in entries if e["destination"].endswith("9876543210"))
    found = re.search(r"\d{4,8}", mine["text"])
    assert found
    await container.verification.check(account, str(started.verification.id), found.group(0), None)
    await _login(web, "dev@example.com")
    page = await web.get("/console/dashboard")
    assert "50.0 % (1 verified of 2 sent)" in page.text
    assert found.group(0) not in page.text


async def test_sender_ids_and_dlt_templates_land_in_the_settings_the_sends_read(
    web: httpx.AsyncClient, customer: str, container: Container
) -> None:
    await _login(web, "dev@example.com")
    token = await _token(web, "/console/senders")
    bad = await web.post(
        "/console/senders", data={"csrf_token": token, "countryCode": "91", "senderId": "<b>x"},
        headers=SAME, follow_redirects=True,
    )  # fmt: skip
    assert "sender id is up to 11" in bad.text
    await web.post(
        "/console/senders", data={"csrf_token": token, "countryCode": "+91", "senderId": "ACMEIN"},
        headers=SAME,
    )  # fmt: skip
    await web.post(
        "/console/templates",
        data={"csrf_token": token, "templateId": "T-1", "text": "Your order {#var#} shipped"},
        headers=SAME,
    )
    account = await container.accounts.get(customer)
    assert container.verification.policy(account).sender_ids["91"] == "ACMEIN"
    assert account.settings["dlt_templates"] == {"T-1": "Your order {#var#} shipped"}


async def test_repeated_wrong_operator_passwords_lock_the_admin_login(
    web: httpx.AsyncClient, container: Container
) -> None:
    assert container.console is not None
    await container.console.operators.create("ops@example.com", "operator password 1")
    for _ in range(10):
        wrong = await web.post(
            "/console/admin/login", data={"email": "ops@example.com", "password": "nope"},
            headers=SAME,
        )  # fmt: skip
        assert wrong.status_code == 401
    locked = await web.post(
        "/console/admin/login",
        data={"email": "ops@example.com", "password": "operator password 1"}, headers=SAME,
    )  # fmt: skip
    assert "set-cookie" not in locked.headers
    assert "too many failed attempts" in locked.text


async def test_a_session_ends_when_it_expires(
    web: httpx.AsyncClient, customer: str, container: Container, clock: FrozenClock
) -> None:
    await _login(web, "dev@example.com")
    assert (await web.get("/console/")).status_code == 200
    clock.advance(container.settings.console.session_ttl_s + 1)
    assert (await web.get("/console/")).status_code == 303


async def test_an_upload_with_a_campaign_id_already_taken_is_refused_as_a_duplicate(
    web: httpx.AsyncClient, customer: str, container: Container
) -> None:
    chosen = str(uuid.uuid4())
    first = await container.messaging.send(
        await container.accounts.get(customer),
        MessageRequest(
            flow_type="SMS", message="hi", sender_id="ACME", phone_numbers="91 9999999997",
            campaign_id=chosen,
        ),
    )  # fmt: skip
    assert first.campaign_id == chosen
    await _login(web, "dev@example.com")
    token = await _token(web, "/console/send")

    again = await web.post(
        "/console/campaigns",
        data={"csrf_token": token, "campaignId": chosen, "senderId": "ACME",
              "message": "hello ##var1##", "messageType": "TRANSACTIONAL"},
        files={"file": ("list.xlsx", workbook([["91", "9999999996", "Ann"]]))},
        headers=SAME,
    )  # fmt: skip

    assert again.status_code == 409, again.text
    assert again.json() == {"error": f"campaignId {chosen} is already taken: choose a new one"}
    record, counts = await container.messaging.campaign(
        await container.accounts.get(customer), chosen
    )
    assert (record.total, sum(counts.values())) == (1, 1)  # the first campaign, untouched


async def test_rotating_the_callback_secret_redirects_and_shows_the_new_secret_once(
    web: httpx.AsyncClient, customer: str, container: Container
) -> None:
    await _login(web, "dev@example.com")
    token = await _token(web, "/console/callbacks")

    rotated = await web.post("/console/callbacks/rotate", data={"csrf_token": token}, headers=SAME)

    assert (rotated.status_code, rotated.headers["location"]) == (303, "/console/callbacks")
    assert "whsec_" not in rotated.text
    shown = await web.get("/console/callbacks")
    secret = re.search(r'<code id="secret">(whsec_[^<]+)</code>', shown.text)
    assert secret, shown.text
    assert "whsec_" not in rotated.headers["location"]
    again = await web.get("/console/callbacks")
    assert secret.group(1) not in again.text
    # the flash is sealed in the session row, not kept readable
    async with container.database.read() as connection:
        stored = await connection.scalars(sa.select(console_sessions.c.flash))
        assert all(value is None for value in stored)
    unsigned = await web.post("/console/callbacks/rotate", data={}, headers=SAME)
    assert unsigned.status_code == 403


async def test_the_flash_is_sealed_while_it_waits_for_its_page(
    web: httpx.AsyncClient, customer: str, container: Container
) -> None:
    await _login(web, "dev@example.com")
    token = await _token(web, "/console/callbacks")
    await web.post("/console/callbacks/rotate", data={"csrf_token": token}, headers=SAME)
    async with container.database.read() as connection:
        [flash] = [v for v in await connection.scalars(sa.select(console_sessions.c.flash)) if v]
    assert "whsec_" not in flash
    other = httpx.AsyncClient(transport=web._transport, base_url="http://127.0.0.1:8080")
    async with other:  # another session of the same customer does not get it
        await _login(other, "dev@example.com")
        assert "whsec_" not in (await other.get("/console/callbacks")).text
    assert "whsec_" in (await web.get("/console/callbacks")).text


async def test_replaying_a_delivery_redirects_with_a_notice(
    web: httpx.AsyncClient, customer: str
) -> None:
    await _login(web, "dev@example.com")
    token = await _token(web, "/console/callbacks")

    replayed = await web.post(
        "/console/callbacks/deliveries/no-such-delivery/replay",
        data={"csrf_token": token}, headers=SAME,
    )  # fmt: skip

    assert (replayed.status_code, replayed.headers["location"]) == (303, "/console/callbacks")
    shown = await web.get("/console/callbacks")
    assert 'role="alert"' in shown.text  # the refusal, carried over the redirect
    assert 'role="alert"' not in (await web.get("/console/callbacks")).text
