"""What the guard keeps: its block records and safe lists, and the counters it shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# (account id, counter name, minute since the epoch)
Bucket = tuple[str, str, int]

# An account's write count: every `CounterStore.add` of a guard adds 1 to it per account it
# writes for, so a process that finds it one above what it saw last knows no other process
# wrote for the account in between. Kept in bucket (account, WRITES, WRITES_MINUTE) for as long
# as the account: never pruned, never expired (a count that restarted could repeat a value).
WRITES = "w"
WRITES_MINUTE = 0


class CountersUnavailableError(Exception):
    """The shared counters could not be read or written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FraudBlock:
    """One tripped rule: a refused send (`action` "blocked"), or a send that went through under
    monitor-only (`action` "monitored", recorded against its verification)."""

    id: str
    account_id: str
    rule: str
    action: str
    subject: str
    destination: str
    country_code: str
    client_ip: str | None
    verification_id: int | None
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)
    created_at: datetime
    until: datetime | None  # the subject stays refused until then (a hold); None: this send only
    hits: int = 1  # refusals this record stands for (a hold's later refusals add up here)
    last_hit_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockQuery:
    rule: str | None = None
    prefix: str | None = None  # the destination or the subject starts with it
    action: str | None = None
    since: datetime | None = None
    verification_id: int | None = None
    limit: int = 100


class FraudStore(Protocol):
    async def add_blocks(self, blocks: Sequence[FraudBlock]) -> None:
        """Insert records; their ids are new."""

    async def add_hits(self, hits: Mapping[str, tuple[int, datetime]]) -> None:
        """Add refusals to holds: block id → (how many more, the latest)."""

    async def active_holds(self, now: datetime) -> list[FraudBlock]:
        """Every "blocked" record whose `until` is after `now`, all accounts."""

    async def list_blocks(self, account_id: str, query: BlockQuery) -> list[FraudBlock]:
        """The account's records matching `query`, newest first."""

    async def safe_list(self, account_id: str) -> list[str]:
        """The account's entries (numbers and `+digits*` prefixes), sorted."""

    async def replace_safe_list(
        self, account_id: str, entries: Sequence[str], now: datetime
    ) -> None:
        """Replace the account's whole safe list."""


def sends_counter_of(name: str) -> tuple[str, bool]:
    """(the sends counter, whether `name` is its verifications): 'pv:+91987650' →
    ('p:+91987650', True), 'p:+91987650' → ('p:+91987650', False)."""
    if name == "av":
        return "a", True
    if len(name) > 2 and name[1] == "v" and name[2] == ":" and name[0] in "pc":
        return name[0] + name[2:], True
    return name, False


class CounterStore(Protocol):
    """Send and verification counts in minute buckets, shared by every process.

    Counters: `a`, `p:<range>`, `c:<country>` count an account's sends, `av`, `pv:<range>`,
    `cv:<country>` their verifications (a backend may keep the two in one record, see
    `sends_counter_of`), `ip:<address>` the sends per client address, and `WRITES`, the
    account's write count (`prune` and expiry leave it).

    Raises CountersUnavailableError when the backend cannot be read or written."""

    async def add(self, increments: Mapping[Bucket, int]) -> dict[Bucket, int]:
        """Add to the buckets (created at zero); one call is all or nothing. Answers each
        bucket's total after the add: every process's counts stored so far."""

    async def read(
        self, account_id: str, names: Sequence[str], since_minute: int
    ) -> dict[str, dict[int, int]]:
        """Each name's buckets from `since_minute` on (names without any are left out)."""

    async def prune(self, before_minute: int) -> None:
        """Forget buckets older than `before_minute`."""

    async def close(self) -> None:
        """Release connections (at shutdown)."""
