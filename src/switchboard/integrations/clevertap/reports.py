"""CleverTap's callback body (an array grouped by event) and what its answer says per record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from switchboard.domain.callbacks import Action, Outcome
from switchboard.domain.messages import MessageStatus
from switchboard.integrations.clevertap.codes import failure_for

DELIVERED = "delivered"
FAILED = "failed"
REPLIED = "replied"
MAX_INCOMING_TEXT = 512  # CleverTap cuts `incomingText` there
# CleverTap's documented maximum batch is 1,000 records; 100 keeps one POST well under a second.
REPORTS_PER_POST = 100


def status_report(
    status: MessageStatus, mid: str, at: datetime, error_code: str | None
) -> dict[str, object]:
    """One record of the callback body: {"event": …, "data": {ts, meta, …}} for a final status."""
    record: dict[str, object] = {"ts": int(at.timestamp()), "meta": mid}
    if status is MessageStatus.DELIVERED:
        record["description"] = "Delivered to handset"
        return {"event": DELIVERED, "data": record}
    failure = failure_for(status, error_code)
    record.update(code=failure.code, description=failure.description)
    return {"event": FAILED, "data": record}


def reply_report(mid: str, at: datetime, to_phone: str, text: str) -> dict[str, object]:
    """An inbound message on the customer's number as CleverTap's `replied` record; `meta` is
    the mid of the message it answers."""
    data = {
        "ts": int(at.timestamp()),
        "meta": mid,
        "toPhone": to_phone,
        "incomingText": text[:MAX_INCOMING_TEXT],
    }
    return {"event": REPLIED, "data": data}


def grouped_body(reports: Sequence[bytes]) -> bytes:
    """The POST body for several stored records: one entry per event, records in order."""
    groups: dict[str, list[object]] = {}
    for raw in reports:
        report = json.loads(raw)
        groups.setdefault(str(report["event"]), []).append(report["data"])
    body = [{"event": event, "data": data} for event, data in groups.items()]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class CleverTapReportFormat:
    """The webhook dispatcher's batch format for CleverTap reports (`domain.callbacks.BatchFormat`).

    CleverTap answers 200 `{"status":"success","processed":n,"unprocessed":[…]}` and 400 with
    the records it refused (missing keys) echoed in `unprocessed[].record`: those are refused
    for good (sent again they would be refused again), the rest count as delivered. Other
    answers (5xx, timeouts) retry the whole batch; CleverTap does not deduplicate, so a record
    is in a later POST only when its earlier one did not get through.
    """

    max_batch = REPORTS_PER_POST

    def encode(self, payloads: Sequence[bytes]) -> bytes:
        return grouped_body(payloads)

    def outcomes(
        self, status_code: int | None, body: bytes, payloads: Sequence[bytes]
    ) -> list[Outcome] | None:
        if status_code is None or not (200 <= status_code < 300 or status_code == 400):
            return None
        refused = _unprocessed(body)
        if status_code == 400 and not refused:
            # a 400 that names no record: the whole body was refused, and would be again
            return [Outcome(Action.REFUSED, "HTTP 400: refused by CleverTap")] * len(payloads)
        results = []
        for raw in payloads:
            data = json.loads(raw)["data"]
            key = (str(data.get("meta")), int(data.get("ts", 0)))
            if key in refused:
                results.append(Outcome(Action.REFUSED, f"HTTP {status_code}: {refused[key]}"))
            else:
                results.append(Outcome(Action.DELIVERED, f"HTTP {status_code}"))
        return results


def _unprocessed(body: bytes) -> dict[tuple[str, int], str]:
    """(meta, ts) → CleverTap's reason, for each record in the answer's `unprocessed`."""
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        return {}
    items = answer.get("unprocessed") if isinstance(answer, dict) else None
    refused: dict[tuple[str, int], str] = {}
    for item in items if isinstance(items, list) else []:
        record = item.get("record") if isinstance(item, dict) else None
        if not isinstance(record, dict):
            continue
        try:
            key = (str(record.get("meta")), int(record.get("ts", 0)))
        except (TypeError, ValueError):
            continue
        refused[key] = str(item.get("error") or item.get("reason") or "unprocessed")[:200]
    return refused
