"""Delivery reports: provider states onto message statuses, and multipart aggregation."""

from __future__ import annotations

from collections.abc import Iterable

from switchboard.domain.messages import MessageStatus

# Report states (channels.base.ReportState values) that settle a message; the rest
# (ENROUTE, ACCEPTD, SENT) are history only.
_FINAL_STATES = {
    "DELIVRD": MessageStatus.DELIVERED,
    # READ implies delivered: WhatsApp and RCS may report it first, or alone.
    "READ": MessageStatus.DELIVERED,
    "UNDELIV": MessageStatus.UNDELIVERABLE,
    "DELETED": MessageStatus.UNDELIVERABLE,
    "EXPIRED": MessageStatus.EXPIRED,
    "REJECTD": MessageStatus.REJECTED,
}
_DELIVERED = frozenset({"DELIVRD", "READ"})
# A part that failed decides the whole message, the worst failure first.
_SEVERITY = ("REJECTD", "UNDELIV", "DELETED", "EXPIRED", "UNKNOWN")


def is_final_state(state: str) -> bool:
    return state in _FINAL_STATES


def status_for_state(state: str) -> MessageStatus | None:
    """The message status a report moves to, or None when the report is history only."""
    if state == "UNKNOWN":
        return MessageStatus.UNKNOWN
    return _FINAL_STATES.get(state)


def aggregate_parts(states: Iterable[str | None]) -> MessageStatus | None:
    """The status of a multipart message from its parts' last states; None while any is open."""
    collected = list(states)
    if not collected or any(s is None or not is_final_state(s) for s in collected):
        if any(s is not None and is_final_state(s) and s not in _DELIVERED for s in collected):
            # a failed part already decides it: the message cannot be delivered whole
            worst = next(s for s in _SEVERITY if s in collected)
            return _FINAL_STATES.get(worst, MessageStatus.UNKNOWN)
        return None
    if all(s in _DELIVERED for s in collected):
        return MessageStatus.DELIVERED
    worst = next(s for s in _SEVERITY if s in collected)
    return _FINAL_STATES.get(worst, MessageStatus.UNKNOWN)


FAILED_FOR_FALLBACK = frozenset(
    {
        MessageStatus.UNDELIVERABLE,
        MessageStatus.REJECTED,
        MessageStatus.EXPIRED,
        MessageStatus.FAILED,
    }
)
