"""Whose rows the current request may touch: the second wall behind every query's account filter.

An entrypoint that has authenticated a customer (the API's token check, the console's customer
session, a CRM's partner credentials) calls `enter(account_id)`. From then on, every transaction
that task opens on PostgreSQL first sets `switchboard.account_id` to that account, and the
row-level security policies of the customer tables (migration 0016) hide every other account's
rows and refuse to write them: a query that forgot its `account_id = :account` filter answers
nothing instead of another customer's data.

Work that serves many accounts at once runs unscoped: the workers, the group-commit writers, the
console's operator pages, the token check itself. A background task started lazily from inside a
request must not inherit that request's account: start it with `unscoped_context()`. Each request
starts and ends unscoped (`api.tenancy.TenancyBoundary`), so the scope of one never leaks into the
next one handled by the same task (in-process ASGI clients run the app in the caller's task).

SQLite has no row-level security: there each query's account filter is the only wall.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_account: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "switchboard_account_scope", default=None
)


def enter(account_id: str) -> None:
    """Scope the rest of the current task (until its request ends) to `account_id`."""
    _account.set(account_id)


def current() -> str | None:
    """The account the current task is scoped to, or None when it serves every account."""
    return _account.get()


@contextmanager
def scoped(account_id: str | None) -> Iterator[None]:
    """Run a block scoped to `account_id` (None: unscoped), then restore the outer scope."""
    token = _account.set(account_id)
    try:
        yield
    finally:
        _account.reset(token)


def unscoped_context() -> contextvars.Context:
    """A copy of the current context without an account scope, for `create_task(context=…)`."""
    context = contextvars.copy_context()
    context.run(_account.set, None)
    return context
