"""Wallets: prepaid balance or credit limit, the append-only ledger, what a status change costs.

The balance is the sum of the account's ledger. A send is charged when it is accepted (the
amount leaves the balance at once, so concurrent sends cannot spend it twice); the charge is
settled when a carrier takes the message and refunded if it never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from switchboard.domain.callbacks import format_event_timestamp
from switchboard.domain.messages import MessageStatus

LOW_BALANCE_EVENT = "wallet.low_balance"

# Statuses in which no carrier has the message yet.
_UNSENT = frozenset({MessageStatus.HELD, MessageStatus.QUEUED, MessageStatus.SENDING})


class LedgerKind(StrEnum):
    TOPUP = "TOPUP"  # money in, by the operator
    CHARGE = "CHARGE"  # sends accepted: a message, or a batch of a campaign
    REFUND = "REFUND"  # charges of messages that never reached a carrier (or REJECTD, if set)


class ChargeState(StrEnum):
    """Where a message's charge stands; kept on the message row."""

    HELD = "HELD"  # charged at acceptance, no carrier has it yet
    SETTLED = "SETTLED"  # a carrier took it (or may have): the charge is final
    REFUNDED = "REFUNDED"


@dataclass(frozen=True, slots=True, kw_only=True)
class Wallet:
    account_id: str
    balance: int
    credit_limit: int = 0
    low_balance_threshold: int | None = None
    low_balance_alerted: bool = False

    @property
    def available(self) -> int:
        """What sends may still spend: the balance, plus the credit limit of a postpaid account."""
        return self.balance + self.credit_limit


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry:
    id: int
    account_id: str
    kind: LedgerKind
    amount: int  # signed: credits positive, charges negative
    balance_after: int
    created_at: datetime
    message_id: str | None = None
    campaign_id: str | None = None
    verification_id: int | None = None
    messages: int = 0
    units: int = 0
    reference: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRow:
    """One group of a usage report: messages accepted, their segments, deliveries and cost."""

    key: str
    messages: int
    segments: int
    delivered: int
    cost: int  # charges still standing (held or settled)
    refunded: int

    @property
    def delivered_share(self) -> float:
        return round(self.delivered / self.messages, 4) if self.messages else 0.0


def charge_transition(
    before: MessageStatus,
    after: MessageStatus,
    state: ChargeState | None,
    *,
    refund_rejected: bool = False,
) -> ChargeState | None:
    """The state a message's charge moves to when its status goes `before` → `after`; None
    when it stays. FAILED and CANCELLED (no carrier took it) and a REJECTED submit are
    refunded; a REJECTD receipt only with `refund_rejected`; any other status a carrier
    reports, UNKNOWN included (it may have been sent), settles the charge."""
    if state is None or state is ChargeState.REFUNDED:
        return None
    if after in (MessageStatus.FAILED, MessageStatus.CANCELLED) or (
        after is MessageStatus.REJECTED and (before in _UNSENT or refund_rejected)
    ):
        return ChargeState.REFUNDED
    if state is ChargeState.HELD and after not in _UNSENT:
        return ChargeState.SETTLED
    return None


def is_low(wallet: Wallet, threshold: int | None) -> bool:
    """Whether a low-balance alert is due: below the threshold and not yet alerted."""
    return threshold is not None and wallet.balance < threshold and not wallet.low_balance_alerted


def low_balance_payload(
    *,
    event_id: str,
    account_id: str,
    balance: str,
    threshold: str,
    currency: str,
    occurred_at: datetime,
) -> dict[str, object]:
    """A Standard Webhooks body like the verification events: {id, type, timestamp, data}."""
    return {
        "id": event_id,
        "type": LOW_BALANCE_EVENT,
        "timestamp": format_event_timestamp(occurred_at),
        "data": {
            "customerId": account_id,
            "balance": balance,
            "threshold": threshold,
            "currency": currency,
        },
    }
