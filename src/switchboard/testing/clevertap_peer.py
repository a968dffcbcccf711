"""A local CleverTap for tests: the Generic (Others) SMS sender and the delivery-report receiver.

The sender is configured as a CleverTap user configures the provider (endpoint, header pairs,
a JSON body template with `$$` placeholders, an optional batch key) and renders each message
into it; the receiver checks CleverTap's documented callback schema and answers its documented
bodies: 200 `{"status":"success","processed":n,"unprocessed":[]}`, 400 with the refused records
echoed in `unprocessed[].record`, and 5xx while a test makes it fail (research §5).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from switchboard.testing.callback_receiver import ReceivedRequest, Receiver, respond

# The body the spec tells CleverTap users to paste (its `//` comment removed).
SPEC_TEMPLATE: dict[str, Any] = {
    "flowType": "SMS",
    "type": "SMS",
    "mobileNumber": "$$To",
    "messageText": "$$Body",
    "senderId": "UTOMOB",
    "mid": "$$MessageID",
}
EVENTS = frozenset({"delivered", "failed", "replied", "clicked"})
FAILURE_CODES = frozenset(str(code) for code in range(900, 921))


def new_message_id(padding: int = 0) -> str:
    """A $$MessageID as CleverTap makes them (`<ids>.<epoch>.<date>.0.wzrk_default.-1.`);
    `padding` lengthens it with more dotted fields, to test long ids."""
    account, campaign = secrets.randbelow(10**10), 1200000000 + secrets.randbelow(10**8)
    mid = f"{account}.{campaign}.1654002362.20220531.0.wzrk_default.-1."
    while len(mid) < padding:
        mid += secrets.token_hex(8) + "."
    return mid


@dataclass(frozen=True, slots=True)
class CleverTapMessage:
    """One message of a campaign, as CleverTap holds it before rendering."""

    to: str  # $$To: the profile's phone, as CleverTap stores it
    body: str  # $$Body
    message_id: str = field(default_factory=new_message_id)  # $$MessageID
    template_id: str = ""  # $$TemplateID
    campaign_id: str = "1654002362"  # $$CampaignID
    custom: Mapping[str, str] = field(default_factory=dict)  # $$<name>

    def placeholders(self) -> dict[str, str]:
        values = {
            "$$To": self.to,
            "$$Body": self.body,
            "$$MessageID": self.message_id,
            "$$TemplateID": self.template_id,
            "$$CampaignID": self.campaign_id,
            "$$TemplateVariables": "",
        }
        values.update({f"$${name}": value for name, value in self.custom.items()})
        return values


def render(template: Any, message: CleverTapMessage) -> Any:
    """The template with every placeholder in its strings replaced (case-sensitive, longest
    names first so `$$ToX` is not read as `$$To`)."""
    values = message.placeholders()
    names = sorted(values, key=len, reverse=True)
    if isinstance(template, str):
        for name in names:
            template = template.replace(name, values[name])
        return template
    if isinstance(template, list):
        return [render(item, message) for item in template]
    if isinstance(template, dict):
        return {key: render(value, message) for key, value in template.items()}
    return template


@dataclass
class CleverTapSender:
    """CleverTap's side of "Generic (Others)": POSTs rendered messages to the endpoint.

    `batch_key` None: one request per message. A name: `{batch_key: [records]}` (CleverTap's
    batching); `array=True`: the records as a bare JSON array.
    """

    http: httpx.AsyncClient
    endpoint: str
    headers: Mapping[str, str]
    template: Any = field(default_factory=lambda: dict(SPEC_TEMPLATE))
    batch_key: str | None = None
    array: bool = False

    @classmethod
    def with_password(
        cls,
        http: httpx.AsyncClient,
        endpoint: str,
        customer_id: str,
        email: str,
        password: str,
        account: str = "6K9-RZZ-W97Z",
        **options: Any,
    ) -> CleverTapSender:
        """The spec's five header pairs."""
        headers = {
            "customerId": customer_id, "email": email, "password": password,
            "Content-Type": "application/json", "account": account,
        }  # fmt: skip
        return cls(http, endpoint, headers, **options)

    def _headers(self, message: CleverTapMessage) -> dict[str, str]:
        return {name: str(render(value, message)) for name, value in self.headers.items()}

    async def send(self, message: CleverTapMessage) -> httpx.Response:
        body = json.dumps(render(self.template, message), ensure_ascii=False).encode()
        return await self.http.post(self.endpoint, content=body, headers=self._headers(message))

    async def send_batch(self, messages: Sequence[CleverTapMessage]) -> httpx.Response:
        records = [render(self.template, message) for message in messages]
        payload: Any = (
            records if self.array or self.batch_key is None else {self.batch_key: records}
        )
        body = json.dumps(payload, ensure_ascii=False).encode()
        return await self.http.post(self.endpoint, content=body, headers=self._headers(messages[0]))


@dataclass(frozen=True, slots=True)
class Report:
    event: str
    record: dict[str, Any]

    @property
    def meta(self) -> str:
        return str(self.record["meta"])


def check_record(event: str, record: Any) -> str | None:
    """Why CleverTap would not process a record, or None when it would."""
    if not isinstance(record, dict):
        return "record is not an object"
    ts = record.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool) or len(str(ts)) != 10:
        return "ts must be epoch seconds (10 digits)"
    if not isinstance(record.get("meta"), str) or not record["meta"]:
        return "meta is mandatory"
    if event == "failed" and record.get("code") not in FAILURE_CODES:
        return "failed records need a code 900-920"
    if event == "replied" and not (record.get("toPhone") and "incomingText" in record):
        return "replied records need toPhone and incomingText"
    if event == "clicked" and not record.get("url"):
        return "clicked records need url"
    return None


class CleverTapReceiver:
    """CleverTap's per-provider callback URL on 127.0.0.1.

    `fail_next(n, status)` answers the next n POSTs with a server error; `refuse_meta` lists
    metas answered as unprocessed (CleverTap's 400), as if the record lacked a mandatory key.
    """

    def __init__(self) -> None:
        self._receiver = Receiver(self._handle)
        self.reports: list[Report] = []  # processed, in arrival order
        self.posts: list[list[Report]] = []  # each POST's records (processed or not)
        self.refused: list[Report] = []
        self.refuse_meta: set[str] = set()
        self._failures: list[int] = []
        self._arrived = asyncio.Event()

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every POST as received (headers and raw body)."""
        return self._receiver.requests

    def url(self, path: str = "/clevertap/sms/dlr") -> str:
        return self._receiver.url(path)

    async def start(self) -> None:
        await self._receiver.start()

    async def stop(self) -> None:
        await self._receiver.stop()

    def fail_next(self, count: int, status: int = 503) -> None:
        self._failures += [status] * count

    def recover(self) -> None:
        """Answer normally again from the next POST."""
        self._failures.clear()

    async def wait_for_reports(self, count: int, timeout_s: float = 10.0) -> list[Report]:
        async with asyncio.timeout(timeout_s):
            while len(self.reports) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.reports[:count]

    async def _handle(self, request: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        if self._failures:
            await respond(writer, self._failures.pop(0), b'{"status":"fail"}')
            return
        try:
            body = json.loads(request.body)
        except ValueError:
            await _answer(writer, 400, {"status": "fail", "error": "invalid JSON"})
            return
        if request.method != "POST" or not isinstance(body, list):
            await _answer(writer, 400, {"status": "fail", "error": "an array is expected"})
            return
        processed: list[Report] = []
        unprocessed: list[dict[str, Any]] = []
        this_post: list[Report] = []
        for group in body:
            event = group.get("event") if isinstance(group, dict) else None
            records = group.get("data") if isinstance(group, dict) else None
            if event not in EVENTS or not isinstance(records, list):
                unprocessed.append({"record": group, "error": "unknown event or no data"})
                continue
            for record in records:
                report = Report(str(event), record if isinstance(record, dict) else {})
                this_post.append(report)
                problem = check_record(str(event), record)
                if problem is None and report.meta in self.refuse_meta:
                    problem = "mandatory key missing"
                if problem is None:
                    processed.append(report)
                else:
                    self.refused.append(report)
                    unprocessed.append({"record": record, "error": problem})
        self.posts.append(this_post)
        self.reports += processed
        self._arrived.set()
        status = 400 if unprocessed else 200
        answer = {
            "status": "fail" if unprocessed else "success",
            "processed": len(processed),
            "unprocessed": unprocessed,
        }
        await _answer(writer, status, answer)


async def _answer(writer: asyncio.StreamWriter, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await respond(writer, status, payload, [("Content-Type", "application/json")])
