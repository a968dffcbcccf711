"""An SMS Campaign of 250 selected persons through the real SMPP path; the report shows receipts."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
from tests.conftest import SettingsFactory
from tests.e2e.conftest import eventually
from tests.e2e.pipedrive.conftest import App, cell, start_app
from tests.integration.smpp.conftest import npm_smsc_dir, npm_smsc_factory  # noqa: F401
from tests.integration.smpp.peers import NpmSmsc

from switchboard.clock import FrozenClock
from switchboard.testing.pipedrive_peer import PipedrivePeer

_DELIVERED = 240
_UNDELIVERED = 10


def _connector(name: str, peer: NpmSmsc) -> dict[str, object]:
    return {"name": name, "type": "smpp", "host": "127.0.0.1", "port": peer.port,
            "system_id": peer.system_id, "password": peer.password, "window": 10, "tps": 500,
            "enquire_link_s": 5, "reconnect_initial_s": 0.2, "reconnect_max_s": 1}  # fmt: skip


@pytest.fixture
async def carrier_app(
    make_settings: SettingsFactory,
    clock: FrozenClock,
    pipedrive: PipedrivePeer,
    npm_smsc_factory: Callable[..., NpmSmsc],  # noqa: F811
) -> AsyncIterator[App]:
    delivering = npm_smsc_factory("--receipt-delay-ms", "20")
    failing = npm_smsc_factory("--receipt-delay-ms", "20", "--dlr-stat", "UNDELIV")
    built, http = await start_app(
        make_settings, clock, pipedrive,
        connectors=[_connector("carrier-a", delivering), _connector("carrier-b", failing)],
        routes=[{"channel": "SMS", "connectors": ["carrier-b"], "prefixes": ["9198766"]},
                {"channel": "SMS", "connectors": ["carrier-a"]}],
    )  # fmt: skip
    yield App(built, http, pipedrive, clock)
    await http.aclose()
    await built.stop()


async def test_campaign_of_250_persons_reports_each_persons_receipt(carrier_app: App) -> None:
    app = carrier_app
    ids = [app.peer.add_person(f"Customer {n:03d}", f"+91 98765 {n:05d}", first_name=f"C{n}")
           for n in range(_DELIVERED)]  # fmt: skip
    ids += [app.peer.add_person(f"Lapsed {n:03d}", f"+91 98766 {n:05d}", first_name=f"L{n}")
            for n in range(_UNDELIVERED)]  # fmt: skip
    await app.save_settings(await app.install())
    text = "Hi ##first_name##, our sale starts today."
    session, preview = await app.compose(ids, text)
    assert preview.status_code == 200, preview.text
    assert cell(preview, "count") == "250"
    # 250 ids: three `ids` chunks of at most 100, each paged by the peer's 40-person pages
    assert sum(1 for r in app.peer.requests if r.path == "/api/v2/persons") >= 2 * 7
    sent = await app.send(session, text)
    assert sent.status_code == 200, sent.text
    assert "250 SMS accepted" in cell(sent, "sent")
    pipedrive_app = app.container.pipedrive
    assert pipedrive_app is not None
    [summary] = await pipedrive_app.campaigns(app.peer.company_id)

    async def settled() -> bool:
        _, rows = await pipedrive_app.report(app.peer.company_id, summary.campaign.id)
        return all(r.status in ("DELIVERED", "UNDELIVERABLE") for r in rows)

    await eventually(settled, timeout_s=40)
    _, rows = await pipedrive_app.report(app.peer.company_id, summary.campaign.id)
    assert len(rows) == 250
    by_name = {r.name: r for r in rows}
    assert by_name["Customer 007"].phone == "+919876500007"
    assert by_name["Customer 007"].delivery_status == "DELIVRD"
    assert by_name["Lapsed 003"].delivery_status == "UNDELIV"
    assert Counter(r.status for r in rows) == {"DELIVERED": 240, "UNDELIVERABLE": 10}

    report = await app.http.get(app.link("report", view="list", ids=[]))
    detail = report.text.split('href="report/')[1].split('"')[0]
    campaign_id, _, token = detail.partition("?")
    exported = await app.http.get(f"/integrations/pipedrive/report/{campaign_id}/csv?{token}")
    statuses = Counter(r["deliveryStatus"] for r in csv.DictReader(io.StringIO(exported.text)))
    assert statuses == {"DELIVRD": 240, "UNDELIV": 10}

    async def all_noted() -> bool:
        return len(app.peer.notes) == 250

    await eventually(all_noted, timeout_s=20)
    noted = {n["person_id"]: n["content"] for n in app.peer.notes}
    assert "Hi C7, our sale starts today." in noted[ids[7]]
