"""The Pipedrive app end to end against the fake Pipedrive: install, settings, sends, report."""

from __future__ import annotations

import asyncio
import csv
import html
import io
from datetime import timedelta

import sqlalchemy as sa
from tests.conftest import SettingsFactory, open_client
from tests.e2e.conftest import eventually
from tests.e2e.pipedrive.conftest import CALLBACK, App, cell, pipedrive_settings, start_app

from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.integrations.pipedrive.client import PipedriveClient
from switchboard.integrations.pipedrive.store import NoteJob
from switchboard.integrations.pipedrive.tokens import CompanyTokens, seal_context
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.pipedrive import SqlPipedriveStore
from switchboard.storage.sql.tables import pipedrive_companies
from switchboard.testing.pipedrive_peer import PipedrivePeer
from switchboard.vault import Vault


async def _stored_company(app: App) -> sa.Row[tuple[object, ...]] | None:
    async with app.container.database.read() as connection:
        return (
            await connection.execute(
                sa.select(pipedrive_companies).where(
                    pipedrive_companies.c.company_id == app.peer.company_id
                )
            )
        ).first()


async def test_install_keeps_the_company_tokens_sealed_and_its_api_domain(app: App) -> None:
    session = await app.install()
    assert session
    row = await _stored_company(app)
    assert row is not None
    assert row.api_domain == app.peer.url
    [access] = app.peer.access_tokens
    [refresh] = app.peer.refresh_tokens
    assert access not in row.access_token
    assert refresh not in row.refresh_token
    vault = app.container.vault
    company = app.peer.company_id
    assert vault.open(row.access_token, seal_context(company, "access_token")) == access
    assert vault.open(row.refresh_token, seal_context(company, "refresh_token")) == refresh
    exchange = next(r for r in app.peer.requests if r.path == "/oauth/token")
    assert exchange.headers["authorization"].startswith("Basic ")
    assert b"redirect_uri=http%3A%2F%2Fswitchboard.test%2Fintegrations%2Fpipedrive%2Fcallback" in (
        exchange.body
    )


async def test_an_install_naming_an_api_domain_off_pipedrive_is_refused(app: App) -> None:
    app.peer.api_domain = "https://pipedrive.evil.example"
    code = app.peer.issue_code(f"http://switchboard.test{CALLBACK}")

    page = await app.http.get(CALLBACK, params={"code": code})

    assert page.status_code == 502
    assert "is not an https://….pipedrive.com URL" in html.unescape(page.text)
    assert await _stored_company(app) is None
    assert not any(r.path == "/api/v1/users/me" for r in app.peer.requests)


async def test_the_peers_loopback_api_domain_needs_the_testing_setting(
    make_settings: SettingsFactory, clock: FrozenClock, pipedrive: PipedrivePeer
) -> None:
    settings = pipedrive_settings(pipedrive)
    settings["pipedrive"]["allow_loopback_api"] = False
    built = build_container(make_settings(integrations=settings), clock=clock)
    await built.start(run_workers=False)
    http = await open_client(built)
    try:
        code = pipedrive.issue_code(f"http://switchboard.test{CALLBACK}")
        page = await http.get(CALLBACK, params={"code": code})
    finally:
        await http.aclose()
        await built.stop()
    assert page.status_code == 502
    assert not any(r.path == "/api/v1/users/me" for r in pipedrive.requests)


async def test_settings_link_the_company_only_with_the_right_password(app: App) -> None:
    session = await app.install()
    wrong = await app.save_settings(session, password="not it")
    assert wrong.status_code == 400
    assert cell(wrong, "error") == "customerId, key or email is invalid"
    row = await _stored_company(app)
    assert row is not None
    assert row.account_id is None
    saved = await app.save_settings(session)
    assert saved.status_code == 200
    assert "C-1" in cell(saved, "saved")
    row = await _stored_company(app)
    assert row is not None
    assert (row.account_id, row.sender_id, row.default_country_code) == ("C-1", "ACMEIN", "91")
    assert "correct horse" not in str(tuple(row))  # the password is checked, never kept


async def test_an_integration_key_works_in_place_of_the_password(app: App) -> None:
    _, plain = await app.container.integration_keys.create("C-1", "Pipedrive")
    session = await app.install()
    saved = await app.save_settings(session, password=plain)
    assert saved.status_code == 200, saved.text


async def test_single_send_from_a_person_page_is_sent_logged_and_reported(app: App) -> None:
    person = app.peer.add_person("Asha Rao", "+91 98765 43210", first_name="Asha")
    await app.save_settings(await app.install())
    session, preview = await app.compose([person], "Hi ##first_name##, your order ships today.",
                                         view="details")  # fmt: skip
    assert preview.status_code == 200, preview.text
    assert (cell(preview, "count"), cell(preview, "encoding"), cell(preview, "segments")) == (
        "1", "GSM7", "1"
    )  # fmt: skip
    assert "Hi Asha, your order ships today." in preview.text
    sent = await app.send(session, "Hi ##first_name##, your order ships today.")
    assert sent.status_code == 200, sent.text
    assert "1 SMS accepted" in cell(sent, "sent")

    async def noted() -> bool:
        return len(app.peer.notes) == 1

    await eventually(noted)
    assert app.peer.notes[0]["person_id"] == person
    assert "Hi Asha, your order ships today." in app.peer.notes[0]["content"]

    report = await app.http.get(app.link("report", view="list", ids=[]))
    assert report.status_code == 200, report.text
    detail_link = report.text.split('href="report/')[1].split('"')[0]
    detail = await app.http.get(f"/integrations/pipedrive/report/{detail_link}")

    async def delivered() -> bool:
        page = await app.http.get(f"/integrations/pipedrive/report/{detail_link}")
        return "DELIVERED" in page.text

    await eventually(delivered)
    assert "Asha Rao" in detail.text
    assert "+919876543210" in detail.text
    campaign_id, _, token = detail_link.partition("?")
    exported = await app.http.get(f"/integrations/pipedrive/report/{campaign_id}/csv?{token}")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    # a leading + is disarmed as every CSV export here does (a spreadsheet formula trigger)
    assert [(r["name"], r["number"], r["status"], r["deliveryStatus"]) for r in rows] == [
        ("Asha Rao", "'+919876543210", "DELIVERED", "DELIVRD")
    ]


async def test_campaign_lists_persons_it_cannot_text_and_sends_to_the_rest(app: App) -> None:
    good = app.peer.add_person("Good", "+91 98765 43211")
    national = app.peer.add_person("National", "098765 43212")  # the default country code applies
    nophone = app.peer.add_person("No Phone")
    broken = app.peer.add_person("Broken", "12")
    shared = app.peer.add_person("Same Number", "+919876543211")
    await app.save_settings(await app.install())
    app.peer.rate_limit(2, retry_after="0")  # two 429s before the persons come back
    session, preview = await app.compose([good, national, nophone, broken, shared, 999], "Hello")
    assert preview.status_code == 200, preview.text
    assert cell(preview, "count") == "2"
    skipped = preview.text.split('id="skipped"')[1]
    for name, reason in (("No Phone", "no phone number"), ("Broken", "not a valid number"),
                         ("Same Number", "same number as Good"),
                         ("Person 999", "not found in Pipedrive")):  # fmt: skip
        assert name in skipped, skipped
        assert reason in skipped, (name, skipped)
    assert sum(1 for r in app.peer.requests if r.path == "/api/v2/persons") >= 3
    sent = await app.send(session, "Hello")
    assert "2 SMS accepted, 4 person(s) not sendable" in cell(sent, "sent")


async def test_a_form_posted_twice_sends_once(app: App) -> None:
    person = app.peer.add_person("Asha", "+91 98765 43210")
    await app.save_settings(await app.install())
    session, _ = await app.compose([person], "Once only")
    first, second = await asyncio.gather(app.send(session, "Once only"),
                                         app.send(session, "Once only"))  # fmt: skip
    assert sorted([first.status_code, second.status_code]) == [200, 400]
    assert "already sent" in (first.text + second.text)
    summaries = await app.container.pipedrive.campaigns(app.peer.company_id)  # type: ignore[union-attr]
    assert len(summaries) == 1


async def test_forged_expired_or_foreign_link_tokens_get_401(app: App) -> None:
    person = app.peer.add_person("Asha", "+91 98765 43210")
    await app.install()
    forged = app.link(
        "sms", view="details", ids=[person], secret="not-the-jwt-secret-of-this-pipedrive-app"
    )
    assert (await app.http.get(forged)).status_code == 401
    expired = app.peer.link_token(now=app.clock.now().timestamp() - 3600)
    query = app.peer.link_query(view="details", selected_ids=[person], token=expired)
    assert (await app.http.get(f"/integrations/pipedrive/sms?{query}")).status_code == 401
    other = app.peer.link_token(company_id="9999", now=app.clock.now().timestamp())
    query = app.peer.link_query(view="details", selected_ids=[person], token=other)
    assert (await app.http.get(f"/integrations/pipedrive/sms?{query}")).status_code == 401
    tampered = await app.http.post("/integrations/pipedrive/sms",
                                   data={"session": "x.y.z", "message": "hi", "action": "send"})  # fmt: skip
    assert tampered.status_code == 401
    assert (await app.http.get(app.link("sms", view="details", ids=[person]))).status_code == 200


async def test_uninstall_needs_the_client_credentials_and_removes_the_tokens(app: App) -> None:
    await app.install()
    refused = await app.peer.send_uninstall(app.http, CALLBACK, secret="wrong")
    assert refused.status_code == 401
    assert await _stored_company(app) is not None
    done = await app.peer.send_uninstall(app.http, CALLBACK)
    assert done.status_code == 200
    assert done.json()["removed"] is True
    assert await _stored_company(app) is None
    page = await app.http.get(app.link("sms", view="details", ids=[1]))
    assert page.status_code == 409


async def test_a_401_from_pipedrive_refreshes_the_token_and_retries(app: App) -> None:
    person = app.peer.add_person("Asha", "+91 98765 43210")
    await app.save_settings(await app.install())
    app.peer.expire_access_tokens()
    page = await app.http.get(app.link("sms", view="details", ids=[person]))
    assert page.status_code == 200, page.text
    assert app.peer.token_calls == ["authorization_code", "refresh_token"]


async def test_expired_access_token_is_refreshed_once_by_two_workers_at_once(
    app: App, database_url: str
) -> None:
    await app.install()
    app.clock.advance(3600)  # the access token has expired
    app.peer.token_delay_s = 0.3  # both workers ask while the refresh is in flight
    settings = app.container.settings.integrations.pipedrive
    assert settings is not None
    databases = [Database(database_url), Database(database_url)]
    clients = [PipedriveClient(settings), PipedriveClient(settings)]
    vault = Vault(app.container.secrets.data_key)
    workers = [
        CompanyTokens(SqlPipedriveStore(db), vault, client, app.clock)
        for db, client in zip(databases, clients, strict=True)
    ]
    try:
        results = await asyncio.gather(*(w.access_token(app.peer.company_id) for w in workers))
    finally:
        for client in clients:
            await client.close()
        for db in databases:
            await db.dispose()
    assert app.peer.token_calls.count("refresh_token") == 1
    [(_, first), (_, second)] = results
    assert first == second
    assert first in app.peer.access_tokens
    row = await _stored_company(app)
    assert row is not None
    stored = vault.open(row.refresh_token, seal_context(app.peer.company_id, "refresh_token"))
    assert app.peer.refresh_tokens == {stored}  # the newest; the old one is dead at Pipedrive


async def test_notes_wait_out_a_pipedrive_outage_and_the_sms_is_not_held(app: App) -> None:
    person = app.peer.add_person("Asha", "+91 98765 43210")
    await app.save_settings(await app.install())
    session, _ = await app.compose([person], "Hello")
    app.peer.fail_notes(1)
    sent = await app.send(session, "Hello")
    assert sent.status_code == 200

    async def tried() -> bool:
        return any(r.path == "/api/v1/notes" for r in app.peer.requests)

    await eventually(tried)
    assert app.peer.notes == []
    await asyncio.sleep(0.3)  # several rounds of the notes loop: not yet due again
    assert app.peer.notes == []
    app.clock.advance(11)  # past the first retry's backoff

    async def logged() -> bool:
        return len(app.peer.notes) == 1

    await eventually(logged)


async def test_the_preview_quotes_the_price_while_billing_is_on(
    make_settings: SettingsFactory, clock: FrozenClock, pipedrive: PipedrivePeer
) -> None:
    built, http = await start_app(
        make_settings, clock, pipedrive, billing={"enabled": True, "default_price": "0.01"}
    )
    app = App(built, http, pipedrive, clock)
    try:
        first = pipedrive.add_person("Asha", "+91 98765 43210")
        second = pipedrive.add_person("Ravi", "+91 98765 43211")
        await app.save_settings(await app.install())
        _, preview = await app.compose([first, second], "Ünïcode ✓ " * 10)
        assert preview.status_code == 200, preview.text
        assert cell(preview, "encoding") == "UCS2"
        assert cell(preview, "segments") == "4"  # 100 UCS-2 characters: 2 parts each
        assert cell(preview, "price") == "0.0400 USD"
    finally:
        await http.aclose()
        await built.stop()


async def test_two_workers_never_claim_the_same_note(
    container: Container, database_url: str
) -> None:
    """Without the Pipedrive app configured: no notes loop of its own takes part."""
    now = container.clock.now()
    jobs = [NoteJob(id=f"note-{n:02d}", company_id="7001", person_id=str(n), content="SMS",
                    attempts=0) for n in range(40)]  # fmt: skip
    databases = [Database(database_url), Database(database_url)]
    stores = [SqlPipedriveStore(db) for db in databases]
    try:
        await stores[0].add_notes(jobs, now)
        lease = now + timedelta(minutes=5)
        first, second = await asyncio.gather(
            *(store.claim_notes(now, 30, lease) for store in stores)
        )
        rest = await stores[0].claim_notes(now, 50, lease)
        again = await stores[1].claim_notes(now, 50, lease)
        later = await stores[1].claim_notes(lease + timedelta(seconds=1), 50, lease)
    finally:
        for db in databases:
            await db.dispose()
    # Racing, a worker may get fewer (PostgreSQL: the loser's conditional UPDATEs match
    # nothing once the winner commits), but never a note the other one has.
    claimed = [j.id for j in first + second + rest]
    assert len(claimed) == len(set(claimed)) == 40
    assert again == []  # all leased
    assert len(later) == 40  # the leases ran out: due again
