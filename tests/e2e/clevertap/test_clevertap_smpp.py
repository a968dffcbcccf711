"""CleverTap → our HTTP endpoint over TCP → SMPP → the npm SMSC → receipt → CleverTap's report."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from tests.conftest import SettingsFactory
from tests.e2e.callbacks.conftest import CALLBACK_SETTINGS
from tests.e2e.clevertap.conftest import sender_for
from tests.e2e.conftest import PASSWORD
from tests.integration.smpp.conftest import npm_smsc_dir, npm_smsc_factory  # noqa: F401
from tests.integration.smpp.peers import NpmSmsc

from switchboard.api.app import create_app
from switchboard.bootstrap import build_container
from switchboard.clock import FrozenClock
from switchboard.testing.clevertap_peer import CleverTapMessage, CleverTapReceiver, new_message_id
from switchboard.testing.client import MessageCentralClient
from switchboard.testing.loopback import LoopbackServer


@pytest.mark.parametrize(
    ("receipt", "event", "code"),
    [("DELIVRD", "delivered", None), ("UNDELIV", "failed", "910")],
)
async def test_a_carrier_receipt_reaches_clevertap_with_the_mid_as_meta(
    receipt: str,
    event: str,
    code: str | None,
    make_settings: SettingsFactory,
    clock: FrozenClock,
    npm_smsc_factory: Callable[..., NpmSmsc],  # noqa: F811
    clevertap: CleverTapReceiver,
) -> None:
    peer = npm_smsc_factory("--receipt-delay-ms", "50", "--dlr-stat", receipt)
    settings = make_settings(
        webhooks=CALLBACK_SETTINGS,
        connectors=[
            {"name": "carrier-a", "type": "smpp", "host": "127.0.0.1", "port": peer.port,
             "system_id": peer.system_id, "password": peer.password, "window": 10, "tps": 200,
             "enquire_link_s": 5, "reconnect_initial_s": 0.2, "reconnect_max_s": 1}
        ],
        routes=[{"channel": "SMS", "connectors": ["carrier-a"]}],
    )  # fmt: skip
    container = build_container(settings, clock=clock)
    await container.start(run_workers=True)
    server = LoopbackServer(create_app(container, manage_lifecycle=False))
    await server.start()
    try:
        await container.accounts.create_customer(
            email="c-1@example.com", password=PASSWORD, customer_id="C-1"
        )
        async with httpx.AsyncClient(base_url=server.url) as http:
            mc = MessageCentralClient(http, "C-1", PASSWORD)
            await mc.fetch_token()
            put = await http.put(
                "/api/v1/clevertap", json={"callbackUrl": clevertap.url()}, headers=mc.headers()
            )
            assert put.status_code == 200, put.json()
            mid = new_message_id(padding=256)
            sent = await sender_for(mc).send(
                CleverTapMessage(to="919876543210", body="Your OTP-free hello", message_id=mid)
            )
            assert sent.status_code == 200, sent.json()

            [submit] = await peer.wait_records(1, timeout_s=10)
            assert submit["destination_addr"] == "919876543210"
            assert submit["source_addr"] == "UTOMOB"
            [report] = await clevertap.wait_for_reports(1, timeout_s=15)
    finally:
        await server.stop()
        await container.stop()
    assert report.event == event
    assert report.meta == mid
    assert report.record.get("code") == code
