"""MessageNow through HTTP: single, list and .xlsx sends, campaigns, scheduling, dry runs."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence

import httpx
import pytest
import sqlalchemy as sa
import xlsxwriter
from tests.conftest import SettingsFactory, open_client
from tests.e2e.conftest import PASSWORD, eventually

from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.storage.sql.tables import messages
from switchboard.testing.client import MessageCentralClient

SEND = "/verification/v3/send"


def workbook(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet()
    for column, name in enumerate(header or ("Country", "Mobile", "var1", "var2", "var3")):
        sheet.write(0, column, name)
    for number, row in enumerate(rows, start=1):
        for column, value in enumerate(row):
            sheet.write(number, column, value)
    book.close()
    return buffer.getvalue()


async def outbox_texts(mc: MessageCentralClient) -> dict[str, str]:
    return {e["destination"]: e["text"] for e in await mc.outbox()}


async def test_spec_curl_sends_one_promotional_sms(mc: MessageCentralClient) -> None:
    response = await mc.http.post(
        f"{SEND}?countryCode=91&flowType=SMS&mobileNumber=9999999999&senderId=UTOMOB&type=SMS"
        "&message=%3CYour%20Message%20Template%3E&messageType=PROMOTIONAL",
        headers=mc.headers(),
    )
    body = response.json()
    assert response.status_code == 200, body
    data = body["data"]
    assert data["verificationId"].isdigit()
    assert data["mobileNumber"] == "9999999999"
    assert data["responseCode"] == "200"
    assert data["errorMessage"] is None
    assert data["smsCLI"] == "UTOMOB"
    assert len(data["transactionId"]) == 36
    assert data["encoding"] == "GSM7"
    assert data["segments"] == 1

    async def delivered() -> bool:
        status = await mc.http.get(f"/api/v1/messages/{data['messageId']}", headers=mc.headers())
        return bool(status.json()["data"]["status"] == "DELIVERED")

    await eventually(delivered)
    texts = await outbox_texts(mc)
    assert texts["+919999999999"] == "<Your Message Template>"
    message = (
        await mc.http.get(f"/api/v1/messages/{data['messageId']}", headers=mc.headers())
    ).json()
    statuses = [h["status"] for h in message["data"]["history"]]
    assert statuses[0] == "QUEUED"
    assert "SUBMITTED" in statuses
    assert statuses[-1] == "DELIVERED"
    assert message["data"]["messageType"] == "PROMOTIONAL"


async def test_single_sends_arriving_together_are_each_queued_once(
    mc: MessageCentralClient, container: Container
) -> None:
    """Single sends share transactions under load (group commit); each keeps its own id."""

    async def send(n: int) -> dict[str, str]:
        response = await mc.http.post(
            SEND,
            params={"type": "SMS", "flowType": "SMS", "countryCode": "91", "senderId": "UTOMOB",
                    "mobileNumber": f"98765{n:05d}", "message": f"order {n} shipped",
                    "messageType": "TRANSACTIONAL"},
            headers=mc.headers(),
        )  # fmt: skip
        body = response.json()
        assert body["responseCode"] == 200, body
        data: dict[str, str] = body["data"]
        return data

    sent = await asyncio.gather(*(send(n) for n in range(30)))
    assert len({data["messageId"] for data in sent}) == 30
    async with container.database.read() as connection:
        rows = (await connection.execute(sa.select(messages.c.id, messages.c.body))).all()
    assert {row.id: row.body for row in rows} == {
        data["messageId"]: f"order {n} shipped" for n, data in enumerate(sent)
    }


async def test_unicode_text_is_counted_as_ucs2_segments(mc: MessageCentralClient) -> None:
    response = await mc.http.post(
        SEND,
        params={"type": "SMS", "flowType": "SMS", "countryCode": "91", "mobileNumber": "9876543210",
                "senderId": "ACMEIN", "message": "नमस्ते " * 20, "messageType": "TRANSACTION"},
        headers=mc.headers(),
    )  # fmt: skip
    data = response.json()["data"]
    assert data["encoding"] == "UCS2"
    assert data["segments"] == 3


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"senderId": ""}, "senderId is required"),
        ({"senderId": "WAY-TOO-LONG-SENDER"}, "senderId must be"),
        ({"message": ""}, "message is required"),
        ({"messageType": "SPAM"}, "messageType"),
        ({"templateId": "1107160016156755389"}, "templateId and entityId go together"),
        ({"entityId": "1201159100000000000"}, "templateId and entityId go together"),
        ({"phoneNumbers": "91 9876543211"}, "exactly one of"),
        ({"otpLength": "6"}, "otpLength applies to VerifyNow"),
        ({"scheduleTime": "next tuesday"}, "scheduleTime"),
        ({"message": "x" * 2000}, "segments"),
        ({"flowType": "SAUTH"}, "not enabled"),
    ],
)
async def test_bad_message_parameters_are_400_with_a_reason(
    mc: MessageCentralClient, params: dict[str, str], reason: str
) -> None:
    base = {"type": "SMS", "flowType": "SMS", "countryCode": "91", "mobileNumber": "9876543210",
            "senderId": "ACMEIN", "message": "hello"}  # fmt: skip
    response = await mc.http.post(SEND, params={**base, **params}, headers=mc.headers())
    body = response.json()
    assert body["responseCode"] == 400, body
    assert reason in body["errorMessage"]


async def test_phone_numbers_list_sends_to_valid_entries_and_reports_bad_ones(
    mc: MessageCentralClient,
) -> None:
    response = await mc.http.post(
        SEND,
        data={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "Sale today",
              "messageType": "PROMOTIONAL",
              "phoneNumbers": "91 9816111111, 91 7715131105, 91 12345, 9876543210, 44 7911123456"},
        headers=mc.headers(),
    )  # fmt: skip
    body = response.json()
    assert body["responseCode"] == 200, body
    data = body["data"]
    assert data["total"] == 5
    assert data["accepted"] == 3
    assert data["invalid"] == 2
    assert [e["index"] for e in data["errors"]] == [2, 3]
    campaign_id = data["campaignId"]

    async def all_delivered() -> bool:
        view = await mc.http.get(f"/api/v1/campaigns/{campaign_id}", headers=mc.headers())
        return bool(view.json()["data"]["delivered"] == 3)

    await eventually(all_delivered)
    texts = await outbox_texts(mc)
    for number in ("+919816111111", "+917715131105", "+447911123456"):
        assert texts[number] == "Sale today"
    summary = (await mc.http.get(f"/api/v1/campaigns/{campaign_id}", headers=mc.headers())).json()
    assert summary["data"]["progress"] == 1.0
    assert summary["data"]["invalid"] == 2


async def test_a_list_with_no_valid_entry_is_refused_with_every_reason(
    mc: MessageCentralClient,
) -> None:
    response = await mc.http.post(
        SEND,
        params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "x",
                "phoneNumbers": "91 1, 91 2"},
        headers=mc.headers(),
    )  # fmt: skip
    body = response.json()
    assert body["responseCode"] == 400
    assert len(body["data"]["errors"]) == 2


async def test_xlsx_upload_gives_each_row_its_own_text(mc: MessageCentralClient) -> None:
    content = workbook(
        [
            (91, 9816111111, "Asha", "₹1,200", "1 Dec"),
            (91, "7715131105", "Ben", "₹90", "2 Dec"),
            (91, 123, "Bad", "x", "y"),
            (44, 7911123456, "Cy", "£5", "3 Dec"),
        ]
    )
    response = await mc.http.post(
        SEND,
        params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "messageType": "TRANSACTIONAL",
                "message": "Hello ##var##, your balance is ##var2## on date ##var3##."},
        files={"file": ("recipients.xlsx", content,
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")},
        headers=mc.headers(),
    )  # fmt: skip
    body = response.json()
    assert body["responseCode"] == 200, body
    assert body["data"]["accepted"] == 3
    assert body["data"]["errors"] == [{"row": 4, "reason": body["data"]["errors"][0]["reason"]}]

    async def arrived() -> bool:
        return len(await outbox_texts(mc)) == 3

    await eventually(arrived)
    texts = await outbox_texts(mc)
    assert texts["+919816111111"] == "Hello Asha, your balance is ₹1,200 on date 1 Dec."
    assert texts["+917715131105"] == "Hello Ben, your balance is ₹90 on date 2 Dec."
    assert texts["+447911123456"] == "Hello Cy, your balance is £5 on date 3 Dec."


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("list.csv", b"Country,Mobile\n91,9816111111\n", ".xlsx"),
        ("list.xlsx", b"this is not a zip file", "xlsx"),
    ],
)
async def test_bad_files_are_400_with_a_reason(
    mc: MessageCentralClient, name: str, content: bytes, reason: str
) -> None:
    response = await mc.http.post(
        SEND,
        params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "hi ##var1##"},
        files={"file": (name, content, "application/octet-stream")},
        headers=mc.headers(),
    )
    body = response.json()
    assert body["responseCode"] == 400, body
    assert reason in body["errorMessage"]
    assert (await mc.outbox()) == []


async def test_message_variables_must_exist_in_the_file(mc: MessageCentralClient) -> None:
    response = await mc.http.post(
        SEND,
        params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "hi ##var5##"},
        files={"file": ("r.xlsx", workbook([(91, 9816111111, "a")]), "application/octet-stream")},
        headers=mc.headers(),
    )
    assert "##var5##" in response.json()["errorMessage"]


async def test_dry_run_returns_encoding_segments_and_text_without_sending(
    mc: MessageCentralClient, container: Container
) -> None:
    response = await mc.http.post(
        SEND,
        params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "dryRun": "true",
                "message": "Hi ##var1## {€}"},
        files={"file": ("r.xlsx", workbook([(91, 9816111111, "Asha"), (91, 9816111112, "Bo")]),
                        "application/octet-stream")},
        headers=mc.headers(),
    )  # fmt: skip
    data = response.json()["data"]
    assert data["dryRun"] is True
    assert data["accepted"] == 2
    assert data["preview"][0] == {"text": "Hi Asha {€}", "encoding": "GSM7", "segments": 1}
    assert (await mc.outbox()) == []
    assert await container.queue.queue_depth() == {}


async def test_schedule_time_defers_the_send(mc: MessageCentralClient, clock: FrozenClock) -> None:
    response = await mc.http.post(
        SEND,
        params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "later",
                "countryCode": "91", "mobileNumber": "9876543210", "scheduleTime": "3600"},
        headers=mc.headers(),
    )  # fmt: skip
    data = response.json()["data"]
    assert data["scheduledAt"] is not None
    message_id = data["messageId"]
    status = await mc.http.get(f"/api/v1/messages/{message_id}", headers=mc.headers())
    assert status.json()["data"]["status"] == "QUEUED"
    clock.advance(3601)

    async def sent() -> bool:
        return bool(await mc.outbox())

    await eventually(sent)


async def test_cancel_stops_a_scheduled_campaign(
    mc: MessageCentralClient, clock: FrozenClock
) -> None:
    response = await mc.http.post(
        SEND,
        params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "later",
                "phoneNumbers": "91 9816111111, 91 9816111112",
                "scheduleTime": clock.now().replace(microsecond=0).isoformat()[:19] + "Z"},
        headers=mc.headers(),
    )  # fmt: skip
    assert response.json()["responseCode"] == 200
    later = await mc.http.post(
        SEND,
        params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "later",
                "phoneNumbers": "91 9816111113, 91 9816111114", "scheduleTime": "600"},
        headers=mc.headers(),
    )  # fmt: skip
    campaign_id = later.json()["data"]["campaignId"]
    cancel = await mc.http.post(f"/api/v1/campaigns/{campaign_id}/cancel", headers=mc.headers())
    assert cancel.json()["data"]["cancelled"] == 2
    clock.advance(601)
    view = await mc.http.get(f"/api/v1/campaigns/{campaign_id}", headers=mc.headers())
    assert view.json()["data"]["cancelled"] == 2


async def test_registered_dlt_template_refuses_text_that_does_not_match(
    mc: MessageCentralClient, container: Container, customer: str
) -> None:
    template_id = "1107160016156755389"
    await container.accounts.update(
        customer, settings={"dlt_templates": {template_id: "Your order {#var#} has shipped."}}
    )
    base = {"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "countryCode": "91",
            "mobileNumber": "9876543210", "templateId": template_id,
            "entityId": "1201159100000000000"}  # fmt: skip
    ok = await mc.http.post(
        SEND, params={**base, "message": "Your order A-17 has shipped."}, headers=mc.headers()
    )
    assert ok.json()["responseCode"] == 200
    bad = await mc.http.post(
        SEND, params={**base, "message": "Your order A-17 was lost."}, headers=mc.headers()
    )
    assert bad.json()["responseCode"] == 400
    assert "DLT template" in bad.json()["errorMessage"]


async def test_campaigns_of_other_customers_are_not_visible(
    mc: MessageCentralClient, container: Container, client: httpx.AsyncClient
) -> None:
    response = await mc.http.post(
        SEND,
        params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "m",
                "phoneNumbers": "91 9816111111"},
        headers=mc.headers(),
    )  # fmt: skip
    campaign_id = response.json()["data"]["campaignId"]
    await container.accounts.create_customer(
        email="b@example.com", password="password b", customer_id="C-B"
    )
    other = MessageCentralClient(client, "C-B", "password b")
    await other.fetch_token()
    view = await client.get(f"/api/v1/campaigns/{campaign_id}", headers=other.headers())
    assert view.json()["responseCode"] == 400
    assert "no campaign" in view.json()["errorMessage"]


async def test_campaign_report_lists_every_recipient_as_json_and_csv(
    mc: MessageCentralClient,
) -> None:
    response = await mc.http.post(
        SEND,
        params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "m",
                "phoneNumbers": "91 9816111111, 91 9816111112, 91 9816111113"},
        headers=mc.headers(),
    )  # fmt: skip
    campaign_id = response.json()["data"]["campaignId"]

    async def done() -> bool:
        view = await mc.http.get(f"/api/v1/campaigns/{campaign_id}", headers=mc.headers())
        return bool(view.json()["data"]["delivered"] == 3)

    await eventually(done)
    report = await mc.http.get(f"/api/v1/campaigns/{campaign_id}/report", headers=mc.headers())
    recipients = report.json()["data"]["recipients"]
    assert sorted(r["destination"] for r in recipients) == [
        "+919816111111", "+919816111112", "+919816111113",
    ]  # fmt: skip
    assert {r["deliveryStatus"] for r in recipients} == {"DELIVRD"}
    csv_report = await mc.http.get(
        f"/api/v1/campaigns/{campaign_id}/report", params={"format": "csv"}, headers=mc.headers()
    )
    assert csv_report.headers["content-type"].startswith("text/csv")
    lines = csv_report.text.strip().splitlines()
    assert lines[0].startswith("messageId,destination,status,deliveryStatus")
    assert len(lines) == 4
    # '+' opens a formula in spreadsheets: the cell is neutralised with a quote
    assert all(",'+9198161111" in line for line in lines[1:])


async def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(
    make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    built = build_container(make_settings(messaging={"max_upload_bytes": 2048}), clock=clock)
    await built.start(run_workers=False)
    try:
        await built.accounts.create_customer(
            email="dev@example.com", password=PASSWORD, customer_id="C-1"
        )
        async with await open_client(built) as http:
            api = MessageCentralClient(http, "C-1", PASSWORD)
            await api.fetch_token()
            response = await http.post(
                SEND,
                params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "message": "x"},
                files={"file": ("big.xlsx", b"x" * 200_000, "application/octet-stream")},
                headers=api.headers(),
            )
        assert response.json()["responseCode"] == 400
        assert "upload limit" in response.json()["errorMessage"]
    finally:
        await built.stop()


async def test_a_file_refused_after_batches_were_staged_leaves_no_message(
    make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    settings = make_settings(messaging={"ingest_batch_size": 10, "max_upload_rows": 25})
    built = build_container(settings, clock=clock)
    await built.start(run_workers=False)
    try:
        await built.accounts.create_customer(
            email="dev@example.com", password=PASSWORD, customer_id="C-1"
        )
        rows = [(91, 9816111111 + n, f"n{n}") for n in range(40)]
        async with await open_client(built) as http:
            api = MessageCentralClient(http, "C-1", PASSWORD)
            await api.fetch_token()
            response = await http.post(
                SEND,
                params={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN",
                        "message": "hi ##var1##"},
                files={"file": ("r.xlsx", workbook(rows), "application/octet-stream")},
                headers=api.headers(),
            )  # fmt: skip
        assert response.json()["responseCode"] == 400, response.json()
        assert "more than 25 recipient rows" in response.json()["errorMessage"]
        async with built.database.read() as connection:
            count = await connection.execute(sa.select(sa.func.count()).select_from(messages))
            assert count.scalar_one() == 0
    finally:
        await built.stop()
