"""Delivery receipts in deliver_sm: a tolerant parser (TLVs first, then text) and id normalising."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from switchboard.channels.base import ReportState
from switchboard.channels.smpp.pdu import ShortMessage, Tag

# SMPP 3.4 §5.3.2.35 message_state values.
_MESSAGE_STATES = {
    1: ReportState.ENROUTE,
    2: ReportState.DELIVRD,
    3: ReportState.EXPIRED,
    4: ReportState.DELETED,
    5: ReportState.UNDELIV,
    6: ReportState.ACCEPTD,
    7: ReportState.UNKNOWN,
    8: ReportState.REJECTD,
}

# Appendix B spells stat in 7 letters; SMSCs also send the long words or lower case.
_STAT_WORDS = {
    "DELIVRD": ReportState.DELIVRD,
    "DELIVERED": ReportState.DELIVRD,
    "EXPIRED": ReportState.EXPIRED,
    "DELETED": ReportState.DELETED,
    "UNDELIV": ReportState.UNDELIV,
    "UNDELIVERABLE": ReportState.UNDELIV,
    "ACCEPTD": ReportState.ACCEPTD,
    "ACCEPTED": ReportState.ACCEPTD,
    "UNKNOWN": ReportState.UNKNOWN,
    "REJECTD": ReportState.REJECTD,
    "REJECTED": ReportState.REJECTD,
    "ENROUTE": ReportState.ENROUTE,
}

_FIELD = re.compile(
    r"(?i)\b(id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err|text)\s*:\s*"
    r"([^\s,;]*)",
)
_HEX_DIGITS = frozenset(string.hexdigits)


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    provider_id: str  # as the SMSC wrote it; normalise before matching
    state: ReportState
    error_code: str | None = None
    submitted_at: datetime | None = None
    done_at: datetime | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


# Appendix B as most SMSCs write it: one match instead of a search per field. Anything else
# (other order, case, separators, missing fields) takes the tolerant path below.
_STANDARD = re.compile(
    r"id:([^\s,;]+) sub:([^\s,;]+) dlvrd:([^\s,;]+) submit date:([^\s,;]+) "
    r"done date:([^\s,;]+) stat:([^\s,;]+) err:([^\s,;]+) text:(.*)",
    re.DOTALL,
)
_STANDARD_KEYS = ("id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err")


def parse_receipt_text(text: str) -> dict[str, str]:
    """Appendix B `key:value` pairs, keys lower-cased with `_` for spaces; `text` runs to the end."""
    standard = _STANDARD.fullmatch(text)
    if standard is not None:
        fields = dict(zip(_STANDARD_KEYS, standard.groups(), strict=False))
        fields["text"] = standard.group(8).strip()
        return fields
    fields = {}
    for match in _FIELD.finditer(text):
        key = match.group(1).lower()
        if key.endswith("date"):
            key = key[:-4].rstrip(" _") + "_date"
        value = match.group(2).strip()
        if key == "text":
            fields.setdefault(key, text[match.start(2) :].strip())
            break  # anything after text: belongs to the text
        fields.setdefault(key, value)
    return fields


def parse_receipt_date(value: str | None) -> datetime | None:
    """YYMMDDhhmm or YYMMDDhhmmss, read as UTC (Appendix B gives no zone); None if unreadable."""
    if not value or not (value.isascii() and value.isdigit()) or len(value) not in (10, 12):
        return None
    year = int(value[:2])
    # strptime's %y rule (POSIX): 69-99 are 1969-1999, 00-68 are 2000-2068.
    year += 1900 if year >= 69 else 2000
    seconds = int(value[10:12]) if len(value) == 12 else 0
    try:
        return datetime(
            year, int(value[2:4]), int(value[4:6]), int(value[6:8]), int(value[8:10]), seconds,
            tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        return None


def parse_receipt(pdu: ShortMessage, text: str) -> Receipt | None:
    """A receipt from a deliver_sm (or data_sm) and its decoded text; None when it has no id.

    TLVs win over text: receipted_message_id and message_state are typed, the text is vendor
    prose. A missing or unrecognised state becomes UNKNOWN rather than dropping the receipt.
    """
    fields = parse_receipt_text(text)
    raw: dict[str, str] = dict(fields)
    id_tlv = pdu.tlv(Tag.RECEIPTED_MESSAGE_ID)
    state_tlv = pdu.tlv(Tag.MESSAGE_STATE)
    error_tlv = pdu.tlv(Tag.NETWORK_ERROR_CODE)

    provider_id = id_tlv.as_text().strip() if id_tlv is not None else ""
    if provider_id:
        raw["receipted_message_id"] = provider_id
    else:
        provider_id = fields.get("id", "")
    if not provider_id:
        return None

    state: ReportState | None = None
    if state_tlv is not None and (number := state_tlv.as_int()) is not None:
        raw["message_state"] = str(number)
        state = _MESSAGE_STATES.get(number)
    if state is None:
        state = _STAT_WORDS.get(fields.get("stat", "").upper(), ReportState.UNKNOWN)

    error_code = fields.get("err")
    if error_tlv is not None and len(error_tlv.value) == 3:
        network_error = f"{error_tlv.value[0]}:{int.from_bytes(error_tlv.value[1:], 'big')}"
        raw["network_error_code"] = network_error
        error_code = error_code or network_error
    if error_code is not None and error_code.strip("0") == "":
        error_code = None  # "000": no error

    return Receipt(
        provider_id=provider_id,
        state=state,
        error_code=error_code,
        submitted_at=parse_receipt_date(fields.get("submit_date")),
        done_at=parse_receipt_date(fields.get("done_date")),
        raw=raw,
    )


def normalise_provider_id(raw: str, base: int | None = None) -> str:
    """One spelling for an SMSC message id, so a receipt finds its submit_sm_resp.

    SMSCs may give the id in hex in one PDU and in decimal in the other. With a known `base`
    (10 or 16) the id becomes its decimal value. Without one: an id of hex digits that has a
    letter is read as hex, an all-digit id as decimal, anything else stays as given (stripped,
    lower-cased if hex-like). Apply the same rule to both sides.
    """
    text = raw.strip()
    if not text:
        return text
    if base is not None:
        try:
            return str(int(text, base))
        except ValueError:
            return text
    if text.isdigit() and text.isascii():
        return str(int(text))
    if len(text) <= 32 and all(char in _HEX_DIGITS for char in text):
        return str(int(text, 16))
    return text
