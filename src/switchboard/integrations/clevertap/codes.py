"""CleverTap's delivery-report failure codes (900-920) from our message states and provider errors.

CleverTap's list (research/integrations.md §5): 900 other, 901 DND, 902 spam, 903 blacklisted,
904 system, 905 subscriber, 906-908 header/entity/template blocked by DLT, 909 DLT consent,
910 invalid subscriber, 912 inbox full, 913 NDNC, 914 undelivered, 915 dropped, 916 expired,
917 force-expired, 918 duplicate drop, 919 DLT failure, 920 URL not whitelisted.
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.domain.messages import MessageStatus


@dataclass(frozen=True, slots=True)
class Failure:
    code: str  # CleverTap sends and expects the code as a string
    description: str


OTHER = Failure("900", "Failed")
SYSTEM = Failure("904", "System error")
SUBSCRIBER = Failure("905", "Subscriber unavailable")
HEADER_BLOCKED = Failure("906", "Header blocked by DLT")
ENTITY_BLOCKED = Failure("907", "Entity blocked by DLT")
TEMPLATE_BLOCKED = Failure("908", "Template blocked by DLT")
DLT_CONSENT = Failure("909", "Blocked by DLT consent or preference")
INVALID_SUBSCRIBER = Failure("910", "Invalid subscriber")
INBOX_FULL = Failure("912", "Inbox full")
BLACKLISTED = Failure("903", "Blacklisted")
UNDELIVERED = Failure("914", "Undelivered")
DROPPED = Failure("915", "Dropped")
EXPIRED = Failure("916", "Expired")
DLT_FAILURE = Failure("919", "DLT failure")

# SMPP 3.4 command_status of a refused submit_sm, as the driver stores it ("0x0B").
_SMPP_STATUSES = {
    0x0A: HEADER_BLOCKED,  # ESME_RINVSRCADR: the sender (header) is not allowed
    0x0B: INVALID_SUBSCRIBER,  # ESME_RINVDSTADR
    0x14: SYSTEM,  # ESME_RMSGQFUL
    0x45: SYSTEM,  # ESME_RSUBMITFAIL
    0x58: SYSTEM,  # ESME_RTHROTTLED (retries used up)
    0x08: SYSTEM,  # ESME_RSYSERR
}

# GSM MAP error causes (3GPP TS 29.002) as carried in a receipt's `err:` field.
_NETWORK_ERRORS = {
    1: INVALID_SUBSCRIBER,  # unknownSubscriber
    5: INVALID_SUBSCRIBER,  # unidentifiedSubscriber
    6: SUBSCRIBER,  # absentSubscriberSM
    9: INVALID_SUBSCRIBER,  # illegalSubscriber
    11: SUBSCRIBER,  # teleserviceNotProvisioned
    13: BLACKLISTED,  # callBarred
    27: SUBSCRIBER,  # absentSubscriber
    31: SUBSCRIBER,  # subscriberBusyForMT-SMS
    32: UNDELIVERED,  # sm-DeliveryFailure
    33: INBOX_FULL,  # messageWaitingListFull
    34: SYSTEM,  # systemFailure
}


def _dlt_family(code: int) -> Failure | None:
    """India DLT scrubbing codes by family (research §9): 600s entity ... 650s preference."""
    if 600 <= code <= 609:
        return ENTITY_BLOCKED
    if 610 <= code <= 619:
        return DLT_FAILURE  # telemarketer / PE-TM chain
    if 620 <= code <= 629:
        return HEADER_BLOCKED
    if 630 <= code <= 639:
        return TEMPLATE_BLOCKED
    if 640 <= code <= 659:
        return DLT_CONSENT
    return None


def failure_for(status: MessageStatus, error_code: str | None) -> Failure:
    """The CleverTap failure for a message that ended in `status` (not DELIVERED).

    A provider code decides where it is known (an SMPP refusal "0x0B", a receipt's decimal
    `err:`, a DLT family); otherwise the status does: EXPIRED → 916, CANCELLED → 915,
    UNDELIVERABLE → 914, REJECTED → 903, FAILED → 904. Raises ValueError for DELIVERED.
    """
    if status is MessageStatus.DELIVERED:
        raise ValueError("a delivered message has no failure code")
    known = _from_provider_code(error_code)
    if known is not None:
        return known
    return _BY_STATUS.get(status, OTHER)


_BY_STATUS = {
    MessageStatus.EXPIRED: EXPIRED,
    MessageStatus.CANCELLED: DROPPED,
    MessageStatus.UNDELIVERABLE: UNDELIVERED,
    MessageStatus.REJECTED: BLACKLISTED,
    MessageStatus.FAILED: SYSTEM,
}


def _from_provider_code(error_code: str | None) -> Failure | None:
    code = (error_code or "").strip()
    if code.lower().startswith("0x"):
        try:
            return _SMPP_STATUSES.get(int(code, 16))
        except ValueError:
            return None
    if code.isdigit() and len(code) <= 6:
        number = int(code)
        return _dlt_family(number) or _NETWORK_ERRORS.get(number)
    return None
