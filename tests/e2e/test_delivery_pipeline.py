"""The delivery pipeline's rules seen from the API: expiry before sending, failover between
connectors, retries that give up, and OTPs overtaking a campaign."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.conftest import SettingsFactory
from tests.e2e.conftest import eventually

from switchboard.bootstrap import build_container
from switchboard.channels.smpp.simulator import SimulatorBehaviour, SmscSimulator
from switchboard.clock import FrozenClock
from switchboard.testing.client import MessageCentralClient


async def status_of(mc: MessageCentralClient, verification_id: str) -> list[dict[str, Any]]:
    view = await mc.http.get(f"/api/v1/verifications/{verification_id}", headers=mc.headers())
    sends: list[dict[str, Any]] = view.json()["data"]["sends"]
    return sends


async def test_an_otp_that_expired_in_the_queue_is_never_sent(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: Any
) -> None:
    built = build_container(make_settings(), clock=clock)
    mc = await start_api(built, workers=False)
    sent = (await mc.send_otp(mobileNumber="9876543210", otpTimeout="30")).json()
    clock.advance(31)
    await built.start_workers()

    async def settled() -> bool:
        return bool(
            (await status_of(mc, sent["data"]["verificationId"]))[0]["status"] == "CANCELLED"
        )

    await eventually(settled)
    assert await mc.outbox() == []


async def test_a_failing_connector_fails_over_to_the_next(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: Any
) -> None:
    settings = make_settings(
        connectors=[
            {"name": "flaky", "type": "sandbox", "outcome": "TRANSIENT"},
            {"name": "backup", "type": "sandbox"},
        ],
        routes=[{"channel": "SMS", "connectors": ["flaky", "backup"]}],
    )
    mc = await start_api(build_container(settings, clock=clock))
    sent = (await mc.send_otp(mobileNumber="9876543210")).json()

    async def delivered() -> bool:
        [send] = await status_of(mc, sent["data"]["verificationId"])
        return bool(send["status"] == "DELIVERED" and send["connector"] == "backup")

    await eventually(delivered)


async def test_retries_back_off_then_give_up_as_failed(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: Any
) -> None:
    settings = make_settings(
        connectors=[{"name": "down", "type": "sandbox", "outcome": "TRANSIENT"}],
        routes=[{"channel": "SMS", "connectors": ["down"]}],
        worker={"poll_interval_s": 0.05, "lease_s": 5, "max_attempts": 3, "retry_base_s": 10},
    )
    mc = await start_api(build_container(settings, clock=clock))
    sent = (
        await mc.http.post(
            "/verification/v3/send",
            params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "hi",
                    "countryCode": "91", "mobileNumber": "9876543210",
                    "messageType": "TRANSACTIONAL"},
            headers=mc.headers(),
        )
    ).json()  # fmt: skip
    message_id = sent["data"]["messageId"]

    async def message() -> dict[str, Any]:
        view = await mc.http.get(f"/api/v1/messages/{message_id}", headers=mc.headers())
        data: dict[str, Any] = view.json()["data"]
        return data

    for retries in (1, 2):  # two retries, each after its backoff (10 s, then 20 s, ±10 %)

        async def requeued(retries: int = retries) -> bool:
            data = await message()
            scheduled = [h for h in data["history"] if "retry at" in (h["detail"] or "")]
            return data["status"] == "QUEUED" and len(scheduled) == retries

        await eventually(requeued)
        clock.advance(25)
    await asyncio.sleep(0)

    async def failed() -> bool:
        return bool((await message())["status"] == "FAILED")

    await eventually(failed)
    assert "gave up after 3 attempts" in str((await message())["history"])


async def test_otps_overtake_a_campaign_that_is_draining(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: Any
) -> None:
    smsc = SmscSimulator(SimulatorBehaviour(receipts=False), port=0)
    await smsc.start()
    try:
        settings = make_settings(
            connectors=[{"name": "carrier", "type": "smpp", "host": "127.0.0.1",
                         "port": smsc.port, "system_id": "switchboard", "password": "secret",
                         "window": 10, "tps": 200, "reconnect_initial_s": 0.1}],
            routes=[{"channel": "SMS", "connectors": ["carrier"]}],
        )  # fmt: skip
        mc = await start_api(build_container(settings, clock=clock))
        numbers = ", ".join(f"91 {9000000000 + n}" for n in range(1000))
        bulk = await mc.http.post(
            "/verification/v3/send",
            data={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "sale",
                  "messageType": "PROMOTIONAL", "phoneNumbers": numbers},
            headers=mc.headers(),
        )  # fmt: skip
        assert bulk.json()["data"]["accepted"] == 1000
        deadline = time.monotonic() + 20
        while len(smsc.accepted) < 50 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        started_at = time.monotonic()
        await mc.send_otp(mobileNumber="8800000001")
        while time.monotonic() - started_at < 20:
            if any(a.pdu.destination_addr == "918800000001" for a in smsc.accepted):
                break
            await asyncio.sleep(0.005)
        waited = time.monotonic() - started_at
        bulk_sent = sum(1 for a in smsc.accepted if a.pdu.destination_addr.startswith("919"))
        # at 200/s the campaign needs 5 s; the OTP jumps the queue of 900+ messages
        assert waited < 1.5, f"OTP took {waited:.2f} s behind the campaign"
        assert bulk_sent < 1000
    finally:
        await smsc.stop()


async def test_an_otp_typed_campaign_does_not_take_the_otp_lane(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: Any
) -> None:
    built = build_container(make_settings(), clock=clock)
    mc = await start_api(built, workers=False)
    numbers = ", ".join(f"91 {9000000000 + n}" for n in range(3))
    campaign = await mc.http.post(
        "/verification/v3/send",
        data={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "code 1234",
              "phoneNumbers": numbers},
        headers=mc.headers(),
    )  # fmt: skip
    assert campaign.json()["data"]["accepted"] == 3
    await mc.send_otp(mobileNumber="8800000001")
    assert await built.queue.queue_depth() == {"otp_queued": 1, "transactional_queued": 3}
