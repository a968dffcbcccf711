"""Message and verification logs: searches by number, id and status, and each message's timeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from switchboard.domain.messages import MessageRecord, MessageStatus
from switchboard.domain.verification import VerificationRecord, VerificationStatus
from switchboard.errors import InvalidRequestError, NotFoundError

MAX_ROWS = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class LogQuery:
    """Every field optional; `number` is compared as E.164, `id` matches either kind of id."""

    number: str | None = None
    id: str | None = None
    status: str | None = None
    limit: int = 50


class LogStore(Protocol):
    async def search_messages(
        self,
        account_id: str,
        *,
        destination: str | None,
        message_id: str | None,
        numeric_id: int | None,
        status: MessageStatus | None,
        limit: int,
    ) -> list[MessageRecord]:
        """The account's messages matching every filter given, newest first."""
        ...

    async def search_verifications(
        self,
        account_id: str,
        *,
        destination: str | None,
        verification_id: int | None,
        status: VerificationStatus | None,
        limit: int,
    ) -> list[VerificationRecord]:
        """The account's verifications matching every filter given, newest first."""
        ...

    async def get_message(self, account_id: str, message_id: str) -> MessageRecord | None: ...

    async def message_events(self, account_id: str, message_id: str) -> list[dict[str, Any]]:
        """The message's status history, oldest first."""
        ...


_PUNCTUATION = str.maketrans("", "", " -().+")


def _destination(number: str | None) -> str | None:
    """A number with its country code as stored (E.164), or an e-mail address as given."""
    raw = (number or "").strip()
    if not raw:
        return None
    if "@" in raw:
        return raw
    digits = raw.translate(_PUNCTUATION)
    if not digits.isdigit() or len(digits) > 15:
        raise InvalidRequestError(f"'{number}' is not a number with its country code")
    return "+" + digits


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_ROWS))


class LogService:
    def __init__(self, store: LogStore) -> None:
        self._store = store

    async def messages(self, account_id: str, query: LogQuery) -> list[MessageRecord]:
        status = None
        if query.status:
            try:
                status = MessageStatus(query.status.strip().upper())
            except ValueError:
                raise InvalidRequestError(
                    "status must be one of " + ", ".join(s.value for s in MessageStatus)
                ) from None
        ident = (query.id or "").strip() or None
        return await self._store.search_messages(
            account_id,
            destination=_destination(query.number),
            message_id=ident if ident and not ident.isdigit() else None,
            numeric_id=int(ident) if ident and ident.isdigit() else None,
            status=status,
            limit=_limit(query.limit),
        )

    async def verifications(self, account_id: str, query: LogQuery) -> list[VerificationRecord]:
        status = None
        if query.status:
            try:
                status = VerificationStatus(query.status.strip().upper())
            except ValueError:
                raise InvalidRequestError(
                    "status must be one of " + ", ".join(s.value for s in VerificationStatus)
                ) from None
        ident = (query.id or "").strip() or None
        if ident and not ident.isdigit():
            raise InvalidRequestError("a verificationId is a number")
        return await self._store.search_verifications(
            account_id,
            destination=_destination(query.number),
            verification_id=int(ident) if ident else None,
            status=status,
            limit=_limit(query.limit),
        )

    async def message(
        self, account_id: str, message_id: str
    ) -> tuple[MessageRecord, list[dict[str, Any]]]:
        """The message and its timeline; NotFoundError for another account's id too."""
        record = await self._store.get_message(account_id, message_id)
        if record is None:
            raise NotFoundError(f"no message {message_id}")
        return record, await self._store.message_events(account_id, message_id)
