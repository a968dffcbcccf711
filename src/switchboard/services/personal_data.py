"""A person's data held for a customer: exported or erased on request (e.g. Shopify's GDPR topics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from switchboard.clock import Clock
from switchboard.storage.base import PersonalDataStore


def _destinations(phones: Iterable[str], emails: Iterable[str]) -> list[str]:
    found = [p.strip() for p in phones if p and p.strip()]
    for email in emails:
        if email and email.strip():  # as stored, and in the lower case addresses compare in
            found += [email.strip(), email.strip().lower()]
    return list(dict.fromkeys(found))


class PersonalDataService:
    def __init__(self, store: PersonalDataStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def export(
        self, account_id: str, *, phones: Iterable[str] = (), emails: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Every message and verification of the account to these E.164 numbers or e-mail
        addresses, as one JSON-ready document."""
        wanted = _destinations(phones, emails)
        rows = await self._store.export_recipient(account_id, wanted) if wanted else {}
        return {
            "destinations": wanted,
            "messages": rows.get("messages", []),
            "verifications": rows.get("verifications", []),
            "exportedAt": self._clock.now().isoformat(),
        }

    async def erase(
        self, account_id: str, *, phones: Iterable[str] = (), emails: Iterable[str] = ()
    ) -> int:
        """Blank those destinations and their texts in place; returns the rows erased."""
        wanted = _destinations(phones, emails)
        return await self._store.erase_recipient(account_id, wanted, self._clock.now())
