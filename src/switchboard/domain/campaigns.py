"""Campaigns: one text to many recipients (a list or an uploaded sheet), sent as one job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignRecord:
    id: str
    numeric_id: int
    transaction_id: str
    account_id: str
    status: str
    channel: str
    message_type: str
    source: str
    sender: str | None
    template: str
    total: int
    invalid: int
    errors: list[dict[str, Any]]
    scheduled_at: datetime | None
    created_at: datetime
    updated_at: datetime
