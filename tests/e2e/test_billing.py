"""Pricing and wallets through the HTTP API: charges, refusals, refunds, concurrency, reports."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tests.conftest import SettingsFactory
from tests.e2e.conftest import eventually
from tests.e2e.test_messagenow import workbook

from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.testing.client import MessageCentralClient

SEND = "/verification/v3/send"
PRICES = """channel,prefix,message_type,price
SMS,*,*,0.0100
SMS,91,OTP,0.0020
SMS,91,TRANSACTIONAL,0.0030
SMS,91,PROMOTIONAL,0.0050
WHATSAPP,*,*,0.0090
WHATSAPP,91,*,0.0080
WHATSAPP,91,OTP,0.0060
RCS,*,*,0.0040
EMAIL,*,*,0.0001
"""
StartApi = Callable[..., Awaitable[MessageCentralClient]]


def billed(
    make_settings: SettingsFactory,
    clock: FrozenClock,
    *,
    batch: int = 2000,
    otp: dict[str, Any] | None = None,
    **billing: Any,
) -> Container:
    """Billing on; SMS to +44 is refused at submit, SMS to +33 gets REJECTD; RCS has no route."""
    settings = make_settings(
        billing={"enabled": True, "currency": "USD", "minor_units": 4, **billing},
        connectors=[
            {"name": "refusing", "type": "sandbox", "outcome": "PERMANENT"},
            {"name": "rejecting", "type": "sandbox", "outcome": "REJECTD"},
        ],
        routes=[
            {"channel": "SMS", "prefixes": ["44"], "connectors": ["refusing"]},
            {"channel": "SMS", "prefixes": ["33"], "connectors": ["rejecting"]},
            {"channel": "SMS", "connectors": ["sandbox"]},
            {"channel": "WHATSAPP", "connectors": ["sandbox"]},
            {"channel": "EMAIL", "connectors": ["sandbox"]},
        ],
        webhooks={"allow_networks": ["127.0.0.1/32"]},
        messaging={"ingest_batch_size": batch},
        otp=otp or {},
    )  # fmt: skip
    return build_container(settings, clock=clock)


async def priced_api(
    start_api: StartApi, built: Container, top_up: str | None = "1.0000", prices: str = PRICES
) -> MessageCentralClient:
    mc = await start_api(built)
    await built.billing.import_prices(prices.splitlines())
    if top_up:
        await built.billing.top_up("C-1", top_up, reference="test")
    return mc


async def message_now(
    mc: MessageCentralClient,
    message_type: str,
    *,
    number: str = "9876543210",
    country: str = "91",
    flow: str = "SMS",
    text: str = "Your order has shipped",
    **extra: str,
) -> dict[str, Any]:
    params = {"type": "SMS", "flowType": flow, "countryCode": country, "mobileNumber": number,
              "senderId": "ACMEIN", "message": text, "messageType": message_type, **extra}  # fmt: skip
    response = await mc.http.post(SEND, params=params, headers=mc.headers())
    body: dict[str, Any] = response.json()
    return body


async def otp(
    mc: MessageCentralClient, number: str = "9876543210", **params: str
) -> dict[str, Any]:
    body: dict[str, Any] = (await mc.send_otp(mobileNumber=number, **params)).json()
    return body


async def otp_message_ids(mc: MessageCentralClient, verification_id: str) -> list[str]:
    view = await mc.http.get(f"/api/v1/verifications/{verification_id}", headers=mc.headers())
    return [s["messageId"] for s in view.json()["data"]["sends"]]


async def message(mc: MessageCentralClient, message_id: str) -> dict[str, Any]:
    view = await mc.http.get(f"/api/v1/messages/{message_id}", headers=mc.headers())
    data: dict[str, Any] = view.json()["data"]
    return data


async def balance(mc: MessageCentralClient) -> dict[str, Any]:
    data: dict[str, Any] = (
        await mc.http.get("/api/v1/account/balance", headers=mc.headers())
    ).json()["data"]
    return data


async def ledger(mc: MessageCentralClient) -> list[dict[str, Any]]:
    response = await mc.http.get("/api/v1/account/ledger?limit=500", headers=mc.headers())
    entries: list[dict[str, Any]] = response.json()["data"]["entries"]
    return entries


async def settled(mc: MessageCentralClient, message_id: str, state: str) -> None:
    async def reached() -> bool:
        charge = (await message(mc, message_id))["charge"]
        return bool(charge and charge["state"] == state)

    await eventually(reached)


async def test_an_imported_table_prices_otp_transactional_promotional_and_whatsapp_differently(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    mc = await priced_api(start_api, billed(make_settings, clock))

    sms_otp = (await otp(mc, "9876543210"))["data"]["verificationId"]
    whatsapp_otp = (await otp(mc, "9876543211", flowType="WHATSAPP"))["data"]["verificationId"]
    transactional = await message_now(mc, "TRANSACTION", number="9876543212", text="a" * 200)
    promotional = await message_now(mc, "PROMOTIONAL", number="9876543213")
    whatsapp = await message_now(mc, "TRANSACTIONAL", number="9876543214", flow="WHATSAPP",
                                 text="a" * 400)  # fmt: skip
    abroad = await message_now(mc, "OTP", country="49", number="15123456789")

    charges = {
        "sms otp": (await message(mc, (await otp_message_ids(mc, sms_otp))[0]))["charge"],
        "whatsapp otp": (await message(mc, (await otp_message_ids(mc, whatsapp_otp))[0]))["charge"],
        "transactional sms (2 segments)": (await message(mc, transactional["data"]["messageId"]))[
            "charge"
        ],
        "promotional sms": (await message(mc, promotional["data"]["messageId"]))["charge"],
        "whatsapp (per message)": (await message(mc, whatsapp["data"]["messageId"]))["charge"],
        "sms to +49": (await message(mc, abroad["data"]["messageId"]))["charge"],
    }
    assert {name: c["amount"] for name, c in charges.items()} == {
        "sms otp": "0.0020",
        "whatsapp otp": "0.0060",
        "transactional sms (2 segments)": "0.0060",
        "promotional sms": "0.0050",
        "whatsapp (per message)": "0.0080",
        "sms to +49": "0.0100",
    }
    assert transactional["data"]["segments"] == 2
    assert {c["currency"] for c in charges.values()} == {"USD"}
    wallet = await balance(mc)
    assert wallet["balance"] == "0.9630"  # 1 - 0.0370
    assert wallet["billingEnabled"] is True
    entries = await ledger(mc)
    assert [e["type"] for e in entries] == ["CHARGE"] * 6 + ["TOPUP"]
    assert entries[-1]["reference"] == "test"
    assert entries[0]["balanceAfter"] == "0.9630"
    assert {e["messageId"] for e in entries[:6]} >= {
        transactional["data"]["messageId"],
        promotional["data"]["messageId"],
    }
    await settled(mc, promotional["data"]["messageId"], "SETTLED")
    await settled(mc, abroad["data"]["messageId"], "SETTLED")
    assert (await balance(mc))["balance"] == "0.9630"  # settling moves no money
    assert await mc_ledger_sum(mc) == "0.9630"


async def mc_ledger_sum(mc: MessageCentralClient) -> str:
    from decimal import Decimal

    return str(sum((Decimal(e["amount"]) for e in await ledger(mc)), Decimal("0.0000")))


async def test_a_customer_with_too_little_balance_is_refused_and_nothing_is_sent(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    mc = await priced_api(start_api, billed(make_settings, clock), top_up="0.0070")

    refused = await mc.send_otp(mobileNumber="9876543210", fallback="WHATSAPP")  # 0.0020+0.0060
    await message_now(mc, "PROMOTIONAL", number="9876543219")  # 0.0050 of 0.0070
    listed = await mc.http.post(
        SEND, headers=mc.headers(),
        data={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "Sale",
              "messageType": "PROMOTIONAL",
              "phoneNumbers": "91 9816111111, 91 7715131105"},  # 0.0100 of 0.0020 left
    )  # fmt: skip

    body = refused.json()
    assert refused.status_code == 400, body
    assert body["responseCode"] == 400
    assert body["message"] == "BAD_REQUEST"
    assert body["errorMessage"] == (
        "insufficient balance: this send costs 0.0080 USD and 0.0070 USD is available; "
        "top up the account and send again"
    )
    assert listed.json()["responseCode"] == 400
    assert (
        "insufficient balance: this send costs 0.0100 USD and 0.0020 USD"
        in (listed.json()["errorMessage"])
    )

    async def one_sent() -> bool:
        return len(await mc.outbox()) == 1

    await eventually(one_sent)
    await asyncio.sleep(0.3)
    assert [e["destination"] for e in await mc.outbox()] == ["+919876543219"]
    assert (await balance(mc))["balance"] == "0.0020"
    assert [e["type"] for e in await ledger(mc)] == ["CHARGE", "TOPUP"]


async def test_concurrent_sends_never_overdraw_and_the_balance_is_the_ledgers_sum(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    built = billed(make_settings, clock)
    mc = await priced_api(start_api, built, top_up="0.0200")  # ten OTPs at 0.0020

    # one number per 1k range: 25 numbers of one range at once is the fraud guard's pumping
    results = await asyncio.gather(*(otp(mc, f"98765{n:02d}210") for n in range(25)))

    codes = [r["responseCode"] for r in results]
    assert codes.count(200) == 10, results
    assert codes.count(400) == 15
    assert all(
        "insufficient balance" in r["errorMessage"] for r in results if r["responseCode"] == 400
    )
    wallet = await built.billing.balance("C-1")
    assert wallet.wallet.balance == 0
    assert await built.billing.ledger_sum("C-1") == 0
    entries = await built.billing.ledger("C-1", limit=100)
    assert sorted(e.balance_after for e in entries if e.kind == "CHARGE") == list(range(0, 200, 20))

    async def all_sent() -> bool:
        return len(await mc.outbox()) == 10

    await eventually(all_sent)


async def test_a_file_campaign_that_runs_out_of_money_mid_file_is_refunded_and_sends_nothing(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    mc = await priced_api(start_api, billed(make_settings, clock, batch=10), top_up="0.0750")
    rows = [(91, 9816100000 + n, f"name{n}") for n in range(25)]  # 25 x 0.0050: 0.1250

    response = await mc.http.post(
        SEND, headers=mc.headers(),
        params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN",
                "messageType": "PROMOTIONAL", "message": "Hi ##var1##"},
        files={"file": ("r.xlsx", workbook(rows), "application/octet-stream")},
    )  # fmt: skip

    body = response.json()
    assert body["responseCode"] == 400, body
    assert (
        "insufficient balance: this send costs 0.0500 USD and 0.0250 USD" in (body["errorMessage"])
    )
    entries = await ledger(mc)
    assert [(e["type"], e["amount"], e["messages"]) for e in entries] == [
        ("REFUND", "0.0500", 10),
        ("CHARGE", "-0.0500", 10),
        ("TOPUP", "0.0750", 0),
    ]
    assert entries[0]["campaignId"] == entries[1]["campaignId"] is not None
    assert (await balance(mc))["balance"] == "0.0750"
    await asyncio.sleep(0.3)
    assert await mc.outbox() == []


@pytest.mark.parametrize("refund_rejected", [False, True])
async def test_messages_no_carrier_took_are_refunded_and_rejectd_only_when_configured(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi, refund_rejected: bool
) -> None:
    built = billed(make_settings, clock, refund_rejected=refund_rejected)
    mc = await priced_api(start_api, built)

    no_route = await message_now(mc, "TRANSACTIONAL", flow="RCS")  # 0.0040, FAILED: no route
    refused = await message_now(mc, "TRANSACTIONAL", country="44", number="7911123456")  # 0.0100
    rejected = await message_now(mc, "TRANSACTIONAL", country="33", number="612345678")  # 0.0100

    await settled(mc, no_route["data"]["messageId"], "REFUNDED")
    await settled(mc, refused["data"]["messageId"], "REFUNDED")
    await settled(mc, rejected["data"]["messageId"], "REFUNDED" if refund_rejected else "SETTLED")
    assert (await message(mc, refused["data"]["messageId"]))["status"] == "FAILED"
    rejectd = await message(mc, rejected["data"]["messageId"])
    assert rejectd["deliveryStatus"] == "REJECTD"
    entries = await ledger(mc)
    refunds = {e["messageId"]: e for e in entries if e["type"] == "REFUND"}
    assert refunds[no_route["data"]["messageId"]]["amount"] == "0.0040"
    assert refunds[refused["data"]["messageId"]]["reference"] == "failed"
    assert (rejected["data"]["messageId"] in refunds) is refund_rejected
    assert (await balance(mc))["balance"] == ("1.0000" if refund_rejected else "0.9900")
    assert await mc_ledger_sum(mc) == (await balance(mc))["balance"]


async def test_unused_fallback_steps_and_cancelled_campaigns_are_refunded(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    mc = await priced_api(start_api, billed(make_settings, clock))

    sent = await otp(mc, fallback="WHATSAPP")  # holds 0.0020 + 0.0060 for the whole plan
    sms, whatsapp = await otp_message_ids(mc, sent["data"]["verificationId"])
    campaign = await mc.http.post(
        SEND, headers=mc.headers(),
        data={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "Sale",
              "messageType": "PROMOTIONAL", "scheduleTime": "86400",
              "phoneNumbers": "91 9816111111, 91 7715131105, 91 9876500000"},
    )  # fmt: skip
    campaign_id = campaign.json()["data"]["campaignId"]
    cancelled = await mc.http.post(f"/api/v1/campaigns/{campaign_id}/cancel", headers=mc.headers())

    assert cancelled.json()["data"]["cancelled"] == 3
    await settled(mc, sms, "SETTLED")
    await settled(mc, whatsapp, "REFUNDED")
    assert (await message(mc, whatsapp))["status"] == "CANCELLED"
    entries = await ledger(mc)
    plan = [(e["type"], e["amount"], e["messageId"]) for e in reversed(entries)
            if e["verificationId"] == sent["data"]["verificationId"]]  # fmt: skip
    assert plan == [
        ("CHARGE", "-0.0020", sms), ("CHARGE", "-0.0060", whatsapp),
        ("REFUND", "0.0060", whatsapp),
    ]  # fmt: skip
    campaign_entries = [e for e in entries if e["campaignId"] == campaign_id]
    assert [(e["type"], e["amount"], e["messages"]) for e in campaign_entries] == [
        ("REFUND", "0.0150", 3),
        ("CHARGE", "-0.0150", 3),
    ]
    assert (await balance(mc))["balance"] == "0.9980"
    assert (await balance(mc))["held"] == "0.0000"
    assert await mc_ledger_sum(mc) == "0.9980"


async def test_a_falling_balance_emits_one_low_balance_callback_until_topped_up(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    built = billed(make_settings, clock)
    mc = await priced_api(start_api, built, top_up="0.0100")
    await built.callbacks.configure("C-1", "http://127.0.0.1:9/hook", events=["wallet"])
    await built.billing.configure_wallet("C-1", low_balance_threshold="0.0050")

    async def low_events() -> list[dict[str, Any]]:
        deliveries = await built.callbacks.deliveries("C-1", limit=50)
        import json

        return [json.loads(d.payload) for d in deliveries if d.event_type == "wallet.low_balance"]

    for number in ("9876543210", "9876543211"):  # 0.0100 → 0.0080 → 0.0060
        await otp(mc, number)
    assert await low_events() == []
    await otp(mc, "9876543212")  # → 0.0040
    await otp(mc, "9876543213")  # → 0.0020: still low, no second alert
    first = await low_events()
    await built.billing.top_up("C-1", "0.0100")  # 0.0120: re-armed
    await otp(mc, "9876543214")  # 0.0100
    await otp(mc, "9876543215")  # 0.0080
    await otp(mc, "9876543216")  # 0.0060
    await otp(mc, "9876543217")  # 0.0040 → alert
    both = await low_events()

    assert len(first) == 1
    assert first[0]["type"] == "wallet.low_balance"
    assert first[0]["data"] == {
        "customerId": "C-1",
        "balance": "0.0040",
        "threshold": "0.0050",
        "currency": "USD",
    }
    assert len(both) == 2
    assert (await balance(mc))["lowBalance"] is True


async def test_dry_runs_return_the_price_and_charge_nothing(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    mc = await priced_api(start_api, billed(make_settings, clock))

    single = await message_now(mc, "TRANSACTIONAL", text="b" * 170, dryRun="true")
    form = {"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "Sale",
            "messageType": "PROMOTIONAL", "dryRun": "true",
            "phoneNumbers": "91 9816111111, 91 7715131105, 44 7911123456"}  # fmt: skip
    listed = (await mc.http.post(SEND, headers=mc.headers(), data=form)).json()

    assert single["data"]["dryRun"] is True
    assert (single["data"]["price"], single["data"]["currency"]) == ("0.0060", "USD")
    assert listed["data"]["price"] == "0.0200"  # 2 x 0.0050 + 0.0100 to +44
    assert (await balance(mc))["balance"] == "1.0000"
    assert [e["type"] for e in await ledger(mc)] == ["TOPUP"]


async def test_customers_read_their_prices_and_never_another_customers(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    built = billed(make_settings, clock)
    mc = await priced_api(start_api, built)
    await built.accounts.create_customer(
        email="b@example.com", password="long enough", customer_id="C-2"
    )
    await built.billing.set_price("SMS", "91", "OTP", "0.0015", customer_id="C-1")
    await built.billing.set_price("SMS", "91", "*", "0.0777", customer_id="C-2")

    view = (
        await mc.http.get("/api/v1/pricing?country=91&channel=SMS", headers=mc.headers())
    ).json()["data"]
    everything = (await mc.http.get("/api/v1/pricing", headers=mc.headers())).json()["data"]

    prices = {p["messageType"]: (p["price"], p["source"], p["unit"]) for p in view["prices"]}
    assert prices == {
        "OTP": ("0.0015", "customer", "segment"),
        "TRANSACTIONAL": ("0.0030", "platform", "segment"),
        "PROMOTIONAL": ("0.0050", "platform", "segment"),
    }
    assert view["currency"] == "USD"
    assert {r["price"] for r in view["rules"]} == {"0.0100", "0.0020", "0.0030", "0.0050", "0.0015"}
    assert "0.0777" not in {r["price"] for r in everything["rules"]}
    whatsapp = [p for p in everything["prices"] if p["channel"] == "WHATSAPP"]
    assert {p["price"] for p in whatsapp} == {"0.0090"}  # no country: the '*' rule
    assert {p["unit"] for p in whatsapp} == {"message"}


async def test_volume_tiers_lower_the_price_within_the_month(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    tiers = "channel,prefix,message_type,price,min_volume\nSMS,91,*,0.0020,0\nSMS,91,*,0.0010,2\n"
    mc = await priced_api(start_api, billed(make_settings, clock), prices=tiers)

    for number in ("9876543210", "9876543211", "9876543212"):
        await otp(mc, number)

    amounts = [e["amount"] for e in reversed(await ledger(mc)) if e["type"] == "CHARGE"]
    assert amounts == ["-0.0020", "-0.0020", "-0.0010"]
    view = (await mc.http.get("/api/v1/pricing?country=91", headers=mc.headers())).json()
    assert view["data"]["monthVolume"] == {"SMS": 3}


async def test_sends_without_a_price_are_refused_unless_a_default_is_set(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    sms_only = "channel,prefix,message_type,price\nSMS,*,*,0.0100\n"
    mc = await priced_api(start_api, billed(make_settings, clock), prices=sms_only)
    refused = await otp(mc, flowType="WHATSAPP")
    assert refused["responseCode"] == 400
    assert "no price is set for WHATSAPP OTP messages to +9198" in refused["errorMessage"]
    assert await mc.outbox() == []


async def test_with_a_default_price_unpriced_sends_cost_the_default(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    sms_only = "channel,prefix,message_type,price\nSMS,*,*,0.0100\n"
    built = billed(make_settings, clock, default_price=0.05)
    mc = await priced_api(start_api, built, prices=sms_only)
    sent = await otp(mc, flowType="WHATSAPP")
    assert sent["responseCode"] == 200
    assert (await balance(mc))["balance"] == "0.9500"


async def test_usage_reports_match_the_ledger_by_day_channel_country_and_type(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    mc = await priced_api(start_api, billed(make_settings, clock))
    sent = [
        await message_now(mc, "TRANSACTIONAL"),
        await message_now(mc, "PROMOTIONAL", number="9876543211"),
        await message_now(mc, "TRANSACTIONAL", flow="WHATSAPP", number="9876543212"),
        await message_now(mc, "TRANSACTIONAL", flow="RCS", number="9876543213"),  # refunded
        await message_now(mc, "TRANSACTIONAL", country="44", number="7911123456"),  # refunded
    ]
    verification = await otp(mc, "9876543219")
    ids = [s["data"]["messageId"] for s in sent]
    ids += await otp_message_ids(mc, verification["data"]["verificationId"])
    for message_id in ids:

        async def final(message_id: str = message_id) -> bool:
            return (await message(mc, message_id))["status"] in ("DELIVERED", "FAILED")

        await eventually(final)

    reports = {
        group: (
            await mc.http.get(f"/api/v1/reports/usage?groupBy={group}", headers=mc.headers())
        ).json()["data"]
        for group in ("day", "channel", "country", "messageType")
    }

    by_channel = {r["group"]: r for r in reports["channel"]["rows"]}
    assert {k: (r["messages"], r["cost"], r["refunded"]) for k, r in by_channel.items()} == {
        "RCS": (1, "0.0000", "0.0040"),
        "SMS": (4, "0.0100", "0.0100"),
        "WHATSAPP": (1, "0.0080", "0.0000"),
    }
    assert by_channel["SMS"]["delivered"] == 3
    assert by_channel["SMS"]["deliveredShare"] == 0.75
    assert {r["group"] for r in reports["country"]["rows"]} == {"91", "44"}
    types = {r["group"]: r["messages"] for r in reports["messageType"]["rows"]}
    assert types == {"OTP": 1, "PROMOTIONAL": 1, "TRANSACTIONAL": 4}
    assert len(reports["day"]["rows"]) == 1
    for report in reports.values():
        assert report["total"]["cost"] == "0.0180"
        assert report["total"]["messages"] == 6
        assert report["ledger"]["net"] == report["total"]["cost"]
        assert report["ledger"]["refunded"] == report["total"]["refunded"] == "0.0140"
    assert (await balance(mc))["balance"] == "0.9820"

    exported = await mc.http.get(
        "/api/v1/reports/usage?groupBy=channel&format=csv", headers=mc.headers()
    )
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["group", "messages", "segments", "delivered", "deliveredShare", "cost",
                       "refunded", "currency"]  # fmt: skip
    assert [r[0] for r in rows[1:]] == ["RCS", "SMS", "WHATSAPP", "total"]
    assert rows[-1][5] == "0.0180"
    ledger_csv = await mc.http.get("/api/v1/account/ledger?format=csv", headers=mc.headers())
    ledger_rows = list(csv.DictReader(io.StringIO(ledger_csv.text)))
    assert list(ledger_rows[0])[:4] == ["id", "type", "amount", "balanceAfter"]
    assert ledger_rows[-1]["amount"] == "1.0000"
    assert {r["amount"] for r in ledger_rows if r["type"] == "CHARGE"} >= {"-0.0030"}  # a number


async def test_report_ranges_and_groups_are_checked(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    mc = await priced_api(start_api, billed(make_settings, clock))
    for query, reason in (
        ("groupBy=week", "groupBy must be one of"),
        ("from=2026-02-01&to=2026-01-01", "'to' must be after 'from'"),
        ("from=2024-01-01&to=2026-01-01", "at most 366 days"),
        ("from=yesterday", "'from' must be a date"),
    ):
        body = (await mc.http.get(f"/api/v1/reports/usage?{query}", headers=mc.headers())).json()
        assert body["responseCode"] == 400, query
        assert reason in body["errorMessage"]


async def test_billing_is_off_by_default_and_sends_are_never_charged(
    mc: MessageCentralClient,
) -> None:
    sent = await message_now(mc, "PROMOTIONAL")
    assert sent["responseCode"] == 200
    assert (await message(mc, sent["data"]["messageId"]))["charge"] is None
    dry = await message_now(mc, "PROMOTIONAL", dryRun="true")
    assert dry["data"]["price"] is None
    view = await balance(mc)
    assert (view["billingEnabled"], view["balance"], view["held"]) == (False, "0.0000", "0.0000")


async def test_resends_racing_the_worker_leave_every_charge_settled_or_refunded_once(
    make_settings: SettingsFactory, clock: FrozenClock, start_api: StartApi
) -> None:
    import sqlalchemy as sa

    from switchboard.storage.sql.tables import messages

    limits = {"resend_cooldown_s": 0, "sends_per_10_min": 50, "sends_per_day": 50}
    built = billed(make_settings, clock, otp=limits)
    mc = await priced_api(start_api, built)
    numbers = [f"98765400{n:02d}" for n in range(8)]

    for _ in range(3):  # each round replaces the last one's verifications while they are sent
        sent = await asyncio.gather(*(otp(mc, n, fallback="WHATSAPP") for n in numbers))
        assert {s["responseCode"] for s in sent} == {200}, sent

    async def nothing_held() -> bool:
        return (await built.billing.balance("C-1")).held == 0

    await eventually(nothing_held)
    async with built.database.read() as connection:
        rows = (
            await connection.execute(
                sa.select(messages.c.status, messages.c.charge_state, messages.c.charge)
            )
        ).all()
    states = {(r.status, r.charge_state) for r in rows}
    assert states <= {
        ("DELIVERED", "SETTLED"), ("CANCELLED", "REFUNDED"), ("SUBMITTED", "SETTLED"),
    }, states  # fmt: skip
    kept = sum(r.charge for r in rows if r.charge_state == "SETTLED")
    entries = await built.billing.ledger("C-1", limit=500)
    refunds = [e.message_id for e in entries if e.kind == "REFUND"]
    assert len(refunds) == len(set(refunds)) == sum(r.charge_state == "REFUNDED" for r in rows)
    wallet = (await built.billing.balance("C-1")).wallet
    assert wallet.balance == await built.billing.ledger_sum("C-1") == 10_000 - kept
