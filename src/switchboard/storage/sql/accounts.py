"""SQL persistence of accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from switchboard.domain.accounts import Account, FailureState
from switchboard.errors import DuplicateResourceError
from switchboard.storage.sql.engines import Database
from switchboard.storage.sql.tables import accounts

_COLUMNS = (
    "id", "email", "name", "password_hash", "enabled", "token_version", "failed_logins",
    "consecutive_failures", "first_failure_at", "locked_until", "settings", "callback_url",
    "created_at", "updated_at",
)  # fmt: skip


def _account(row: sa.Row[Any]) -> Account:
    values = row._mapping
    return Account(**{name: values[name] for name in _COLUMNS})


def _key(email: str) -> str:
    """The e-mail as the login looks it up (case-insensitive)."""
    return email.strip().lower()


class SqlAccountStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def create_account(self, account: Account) -> None:
        async with self._db.read() as connection:
            taken = await connection.scalar(
                sa.select(accounts.c.id).where(
                    sa.or_(accounts.c.id == account.id, accounts.c.email_key == _key(account.email))
                )
            )
        if taken is not None:
            raise DuplicateResourceError("a customer with this id or e-mail already exists")
        try:
            async with self._db.write() as connection:
                await connection.execute(
                    accounts.insert().values(
                        {name: getattr(account, name) for name in _COLUMNS}
                        | {"email_key": _key(account.email)}
                    )
                )
        except IntegrityError:
            raise DuplicateResourceError("a customer with this id already exists") from None

    async def get_account(self, account_id: str) -> Account | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(sa.select(accounts).where(accounts.c.id == account_id))
            ).first()
        return _account(row) if row else None

    async def find_account_by_email(self, email: str) -> Account | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(accounts)
                    .where(accounts.c.email_key == _key(email))
                    .order_by(accounts.c.created_at)
                    .limit(1)
                )
            ).first()
        return _account(row) if row else None

    async def list_accounts(self) -> list[Account]:
        async with self._db.read() as connection:
            rows = (
                await connection.execute(sa.select(accounts).order_by(accounts.c.created_at))
            ).all()
        return [_account(row) for row in rows]

    async def update_account(
        self, account_id: str, now: datetime, **changes: Any
    ) -> Account | None:
        unknown = set(changes) - set(accounts.c.keys())
        if unknown:
            raise ValueError(f"unknown account fields: {sorted(unknown)}")
        async with self._db.write() as connection:
            row = (
                await connection.execute(
                    accounts.update()
                    .where(accounts.c.id == account_id)
                    .values(**changes, updated_at=now)
                    .returning(*accounts.c)
                )
            ).first()
        return _account(row) if row else None

    async def record_login_failure(self, account_id: str, state: FailureState) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                accounts.update()
                .where(accounts.c.id == account_id)
                .values(
                    failed_logins=state.failed_logins,
                    consecutive_failures=state.consecutive_failures,
                    first_failure_at=state.first_failure_at,
                    locked_until=state.locked_until,
                )
            )

    async def reset_login_failures(self, account_id: str) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                accounts.update()
                .where(accounts.c.id == account_id)
                .values(
                    failed_logins=0,
                    consecutive_failures=0,
                    first_failure_at=None,
                    locked_until=None,
                )
            )
