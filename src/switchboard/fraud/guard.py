"""The fraud guard: screens an OTP send before it is queued, records what tripped, counts.

Counts live in minute buckets shared through a `CounterStore` (the database, or Redis). Each
process keeps a copy of the buckets it uses, adds its own sends at once and exchanges them with
the store at most every `sync_interval_s`: so a send costs dictionary lookups, not a round
trip, and another process's sends are seen within that interval. A number range the process
has not seen yet is read before its first send is judged. When the store cannot be read the
guard refuses the send (fail closed) unless the account or the platform says fail open.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from switchboard.clock import Clock
from switchboard.config import FraudSettings
from switchboard.domain.accounts import Account
from switchboard.errors import InvalidCountryCodeError, InvalidRequestError, LimitReachedError
from switchboard.fraud import rules
from switchboard.fraud.rules import Mode, Rule, Thresholds, Trip
from switchboard.fraud.store import (
    WRITES,
    WRITES_MINUTE,
    BlockQuery,
    Bucket,
    CounterStore,
    FraudBlock,
    FraudStore,
)
from switchboard.observability import get_logger

log = get_logger("switchboard.fraud")

_Key = tuple[str, str]  # (account id, counter name)
_STATIC_RECORD_S = 3600  # refusals by the country and range rules share a record this long
_PRUNE_EVERY_S = 3600.0
_READ_CHUNK = 500
_RECENT_MINUTES = 5  # another process's writes are of its counts of the last minutes
_WALK_BUCKETS = 8  # a counter with at most this many minutes is summed without a cache


class FraudBlockedError(LimitReachedError):
    """800: a rule of the guard refused the send; `block_id` names its record."""

    def __init__(self, message: str, *, block_id: str | None, retry_after_s: int | None) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.block_id = block_id


class FraudCountryError(InvalidCountryCodeError):
    """511: the account may not send to this country."""

    def __init__(self, message: str, *, block_id: str) -> None:
        super().__init__(message)
        self.block_id = block_id


class _Series:
    """One counter's minute buckets (the store's figures plus this process's unsent ones)."""

    __slots__ = ("buckets", "generation", "last", "local", "sums", "used")

    def __init__(self, buckets: dict[int, int], generation: int, *, local: bool = False) -> None:
        self.buckets = buckets
        # sums over spans of a dense counter, made at its first long sum (most counters are
        # a few buckets: walking them costs less than keeping sums)
        self.sums: dict[tuple[int, int], int] | None = None
        self.last = 0  # the latest minute a kept sum ends before
        self.used = 0.0
        # the syncs done when it was last used: unused during a whole interval, it missed a
        # sync's read of the other processes' counts
        self.generation = generation
        # an address seen once here: its history is read before its second send is judged
        self.local = local

    def add(self, minute: int, count: int) -> None:
        self.buckets[minute] = self.buckets.get(minute, 0) + count
        if minute < self.last:  # a late correction (a count given back) inside a kept sum
            self._drop_sums()

    def _drop_sums(self) -> None:
        if self.sums:
            self.sums.clear()
        self.last = 0

    def forget_before(self, minute: int) -> None:
        old = [m for m in self.buckets if m < minute]
        for m in old:
            del self.buckets[m]
        if old:
            self._drop_sums()

    def put(self, minute: int, count: int) -> None:
        self.buckets[minute] = count
        self._drop_sums()

    def total(self, first: int, last: int) -> int:
        """Minutes first..last inclusive; a dense counter keeps its sum before `last` (the
        past is fixed between syncs)."""
        if last < first:
            return 0
        buckets = self.buckets
        if len(buckets) <= _WALK_BUCKETS:  # a sparse counter: walk what it has
            total = 0
            for m, n in buckets.items():
                if first <= m <= last:
                    total += n
            return total
        span = (first, last)
        sums = self.sums
        if sums is None:
            sums = self.sums = {}
        earlier = sums.get(span)
        if earlier is None:
            get = buckets.get
            if len(buckets) < last - first:
                earlier = sum(n for m, n in buckets.items() if first <= m < last)
            else:
                earlier = sum(get(m, 0) for m in range(first, last))
            if len(sums) > 16:
                sums.clear()
            sums[span] = earlier
            self.last = max(self.last, last)
        return earlier + buckets.get(last, 0)


class _Counters:
    """The counters one send is judged on, looked up once."""

    __slots__ = ("address", "country", "country_verified", "range", "range_verified", "sends",
                 "verified")  # fmt: skip

    def __init__(
        self,
        sends: _Series,
        verified: _Series,
        range_: _Series,
        range_verified: _Series,
        country: _Series,
        country_verified: _Series,
        address: _Series | None = None,
    ) -> None:
        self.sends, self.verified = sends, verified
        self.range, self.range_verified = range_, range_verified
        self.country, self.country_verified = country, country_verified
        self.address = address


class _Velocity(NamedTuple):
    """A range's numbers in its window, in the rest of its baseline period, and its limit."""

    in_window: int
    before: int
    limit: float


def _velocity(series: _Series, minute: int, limits: Thresholds) -> _Velocity:
    window = limits.prefix_window_s // 60
    before = series.total(minute - limits.baseline_s // 60 + 1, minute - window)
    return _Velocity(
        series.total(minute - window + 1, minute), before, rules.prefix_limit(before, limits)
    )


class _Look:
    """What one send is judged on: its time, range and counters, gathered by `_look`."""

    __slots__ = ("address_key", "counters", "country_key", "fresh", "last", "minute", "now",
                 "prefix", "range_key", "seen", "stored", "velocity")  # fmt: skip

    counters: _Counters
    last: int | None  # the minute this number was last counted in its range here
    fresh: bool  # counted in its range: new in the range's window

    def __init__(self, admission: Admission, now: datetime, prefix: str) -> None:
        account_id = admission.account_id
        self.now = now
        self.minute = int(now.timestamp()) // 60
        self.prefix = prefix
        self.range_key = (account_id, f"p:{prefix}")
        self.country_key = (account_id, f"c:{admission.country_code}")
        ip_key = admission.client_ip
        self.address_key = None if ip_key is None else (account_id, f"ip:{ip_key}")
        self.seen = (account_id, admission.destination)  # the key of `FraudGuard._numbers`
        self.velocity: _Velocity | None = None  # for a number new in its range's window
        self.stored: _Key | None = None  # the counter this send is in the store in already


@dataclass(frozen=True, slots=True)
class AccountRules:
    """One account's view of the guard: each rule's mode and the account's own lists."""

    modes: dict[Rule, Mode]
    fail_open: bool
    countries: frozenset[str] | None
    high_cost: tuple[str, ...]
    active: bool  # some rule is not off


def account_rules(account: Account, options: FraudSettings) -> AccountRules:
    own: dict[str, Any] = account.settings
    nested = own.get("fraud") if isinstance(own.get("fraud"), dict) else {}
    assert isinstance(nested, dict)

    def setting(name: str) -> Any:
        value = own.get(f"fraud.{name}")
        return nested.get(name) if value is None else value

    modes = {}
    for rule in Rule:
        default = Mode.OFF if not options.enabled else Mode(options.rules.get(rule.value, "on"))
        modes[rule] = rules.parse_mode(setting(rule.value), default)
    countries = own.get("fraud_countries") or own.get("allowed_countries") or options.countries
    fail_open = setting("fail_open")
    return AccountRules(
        modes=modes,
        fail_open=options.fail_open if fail_open is None else bool(fail_open),
        countries=frozenset(str(c).lstrip("+") for c in countries) if countries else None,
        high_cost=(*options.high_cost_prefixes, *own.get("fraud_high_cost_prefixes", ())),
        active=any(mode is not Mode.OFF for mode in modes.values()),
    )


@dataclass(slots=True)
class Admission:
    """A screened send: the counts it took (given back if it is not stored) and what the
    monitor-only rules saw."""

    account_id: str
    destination: str
    country_code: str
    client_ip: str | None
    counted: list[_Key] = field(default_factory=list)
    minute: int = 0
    monitored: list[Trip] = field(default_factory=list)
    new_number: tuple[tuple[str, str], int | None] | None = None


def _thresholds(options: FraudSettings) -> Thresholds:
    names = Thresholds.__dataclass_fields__
    return Thresholds(**{name: getattr(options, name) for name in names})


def new_block_id() -> str:
    return f"fb_{secrets.token_hex(10)}"


class FraudGuard:
    def __init__(
        self,
        store: FraudStore,
        counters: CounterStore,
        clock: Clock,
        options: FraudSettings,
        *,
        settings_cache_s: float = 2.0,
    ) -> None:
        self._store = store
        self._counters = counters
        self._clock = clock
        self._options = options
        self._limits = _thresholds(options)
        self._settings_cache_s = settings_cache_s
        self._series: dict[_Key, _Series] = {}
        self._pending: dict[_Key, dict[int, int]] = {}  # counted here, not yet sent
        self._holds: dict[tuple[str, str, str], FraudBlock] = {}
        self._static: dict[tuple[str, str, str], FraudBlock] = {}
        self._hits: dict[str, tuple[int, datetime]] = {}
        self._numbers: dict[tuple[str, str], int] = {}  # (account, number) → minute counted
        self._cold: dict[str, set[str]] = {}  # counters whose history the next sync reads
        # Whether another process writes for an account: the store's write count of it
        # (`WRITES`) and the minute this process last saw it. A count that moved by more than
        # this process's own writes puts the account in `_foreign` (→ the minute it was seen
        # before): the next sync reads its counters back from then; `_foreign_at` keeps the
        # sync that found it, so counters unused since are read whole at their next use. An
        # account only this process writes for is never read back.
        self._writes: dict[str, tuple[int, int]] = {}
        self._foreign: dict[str, int] = {}
        self._foreign_at: dict[str, int] = {}
        self._used: set[_Key] = set()  # counters used since the last sync
        # codes verified, not counted yet: (account, number, country code, minute)
        self._verifications: list[tuple[str, str, str, int]] = []
        self._rules: dict[str, tuple[dict[str, Any], AccountRules]] = {}
        self._safe: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._lock = asyncio.Lock()
        self._synced_at = float("-inf")
        self._synced_minute = 0
        self._generation = 0  # syncs so far: what the verdicts below were judged on
        self._country_verdicts: dict[tuple[str, str], tuple[tuple[int, int], Trip | None]] = {}
        self._normals: dict[str, tuple[tuple[int, int], float]] = {}
        self._background: asyncio.Task[None] | None = None
        self._pruned_at = float("-inf")

    @property
    def limits(self) -> Thresholds:
        return self._limits

    # -- the send path ---------------------------------------------------------------------

    @asynccontextmanager
    async def admit(
        self,
        account: Account,
        *,
        destination: str,
        country_code: str,
        client_ip: str | None,
        verification_id: int,
    ) -> AsyncIterator[None]:
        """Screen the send (raises 800, or 511 for a country, when a rule refuses it), run the
        body (the store's transaction), then keep the counts and the monitor-only records;
        a body that fails gives the counts back."""
        admission = await self.screen(account, destination, country_code, client_ip)
        try:
            yield
        except BaseException:
            self._uncount(admission)
            raise
        if admission.monitored:
            await self._record_monitored(admission, verification_id)

    async def screen(
        self, account: Account, destination: str, country_code: str, client_ip: str | None
    ) -> Admission:
        ip_key = None
        if client_ip is not None and client_ip.strip():
            try:
                ip_key = rules.client_ip_key(client_ip)
            except ValueError:
                raise InvalidRequestError(f"clientIp '{client_ip}' is not an IP address") from None
        admission = Admission(account.id, destination, country_code, ip_key)
        policy = self._policy(account)
        if not policy.active:
            return admission
        try:
            look = await self._look(admission, policy)
        except Exception as exc:
            if policy.fail_open:
                log.warning("fraud check unavailable; failing open", error=type(exc).__name__)
                return admission
            log.error("fraud check unavailable", error=type(exc).__name__)
            raise FraudBlockedError(
                "fraud check unavailable: the guard cannot read its counters; try again later",
                block_id=None,
                retry_after_s=30,
            ) from None
        if look is None:  # safe-listed
            return admission
        admission.minute = look.minute
        trips = self._judge(admission, policy, look)
        if trips:
            try:
                await self._apply(admission, policy, trips, look.now)
            except BaseException:
                if look.stored is not None:
                    await self._give_back(look.stored, look.minute)
                raise
        self._count_send(admission, look)
        return admission

    async def _look(self, admission: Admission, policy: AccountRules) -> _Look | None:
        """What the send is judged on (None: the number is safe-listed). Awaits only what
        needs the store: the safe list and the sync when they are due, a counter's history the
        first time, a range near its limit."""
        account_id, destination = admission.account_id, admission.destination
        safe = self._cached_safe(account_id)
        if safe is None:
            safe = await self._safe_entries(account_id)
        if safe and rules.is_safe(safe, destination):
            return None
        if self._sync_due():
            await self._refresh()
        limits = self._limits
        look = _Look(
            admission, self._clock.now(), rules.prefix_of(destination, limits.wildcard_digits)
        )
        prefix, minute, country_code = look.prefix, look.minute, admission.country_code
        names = ["a", "av", look.range_key[1], f"pv:{prefix}", look.country_key[1],
                 f"cv:{country_code}"]  # fmt: skip
        if look.address_key is not None:
            names.append(look.address_key[1])
        look.counters = counters = _Counters(*await self._load(account_id, names))
        look.last = last = self._numbers.get(look.seen)
        look.fresh = last is None or minute - last >= limits.prefix_window_s // 60
        if look.fresh and policy.modes[Rule.PREFIX_VELOCITY] is not Mode.OFF:
            look.velocity = velocity = _velocity(counters.range, minute, limits)
            if (velocity.in_window + 1) * 2 > velocity.limit:  # past half its limit
                shown = rules.shown_prefix(prefix, limits.wildcard_digits)
                look.stored = await self._exchange_near_limit(
                    look.range_key, counters.range, shown, look.now
                )
                if look.stored is not None:
                    look.velocity = _velocity(counters.range, minute, limits)
        return look

    def _count_send(self, admission: Admission, look: _Look) -> None:
        """The screened send in the counters it is counted in (`stored`: in the store already)."""
        account_id, minute, counters = admission.account_id, look.minute, look.counters
        counted = [(account_id, "a"), look.country_key]
        self._count_in(counted[0], counters.sends, minute, 1)
        self._count_in(look.country_key, counters.country, minute, 1)
        # The range counts numbers, not sends: one user's resends are the per-number limits'
        # business, pumping is many numbers in one range. (Per process: a number sent to by
        # two processes counts twice, on the safe side.)
        if look.fresh:
            counted.append(look.range_key)
            if look.stored == look.range_key:
                counters.range.add(minute, 1)
            else:
                self._count_in(look.range_key, counters.range, minute, 1)
            self._numbers[look.seen] = minute
            admission.new_number = (look.seen, look.last)
        if look.address_key is not None and counters.address is not None:
            counted.append(look.address_key)
            self._count_in(look.address_key, counters.address, minute, 1)
        admission.counted = counted

    async def _apply(
        self, admission: Admission, policy: AccountRules, trips: list[Trip], now: datetime
    ) -> None:
        """Refuse the send on the first trip of a rule that is on; note the monitor-only."""
        for trip in trips:
            mode = policy.modes[trip.rule]
            if mode is Mode.ON:
                await self._refuse(admission, trip, now)
            if mode is Mode.MONITOR:
                admission.monitored.append(trip)

    async def refuse_country(
        self,
        account: Account,
        *,
        destination: str,
        country_code: str,
        client_ip: str | None,
        permitted: frozenset[str],
    ) -> None:
        """The account's `allowed_countries` refused the send before the rules ran: recorded
        as the country rule's refusal (one record per country an hour, later ones as hits),
        then 511. Only an account whose guard is off (or a record that cannot be written)
        gets the plain 511."""
        trip = rules.check_country(country_code, permitted)
        assert trip is not None
        trip = replace(trip, figures={**trip.figures, "setting": "allowed_countries"})
        if not self._policy(account).active:
            return
        try:
            ip_key = rules.client_ip_key(client_ip) if client_ip and client_ip.strip() else None
        except ValueError:  # the country answers first, as without the guard
            ip_key = None
        admission = Admission(account.id, destination, country_code, ip_key)
        await self._refuse(admission, trip, self._clock.now())

    async def _exchange_near_limit(
        self, key: _Key, series: _Series, shown: str, now: datetime
    ) -> _Key | None:
        """A range past half its limit is exchanged with the store before the send is judged:
        this process's unsent numbers of it and this send written, every process's read back
        (judged without this send, given back if refused). So an attack spread over
        processes is judged on every process's counts once it nears the limit, not a sync
        interval late; a range far below it (nearly all of them) costs nothing. Answers the
        counter this send is already stored in (the caller checked that it is past half)."""
        limits = self._limits
        account_id, name = key
        hold = self._holds.get((account_id, Rule.PREFIX_VELOCITY.value, shown))
        if hold is not None and hold.until is not None and hold.until > now:
            return None  # refused anyway
        minute = int(now.timestamp()) // 60
        window = limits.prefix_window_s // 60
        unsent = self._pending.pop(key, {})
        try:
            totals = await self._write(
                {(account_id, name, m): n + (m == minute) for m, n in {minute: 0, **unsent}.items()}
            )
        except BaseException:
            for m, n in unsent.items():
                again = self._pending.setdefault(key, {})
                again[m] = again.get(m, 0) + n
            raise
        self._apply_totals(totals)
        if account_id in self._foreign:  # the other processes' numbers of the range, at once
            since = minute - window + 1
            try:
                read = await self._counters.read(account_id, [name], since)
            except BaseException:
                await self._give_back(key, minute)
                raise
            self._merge(account_id, [name], read, since, minute)
        series.add(minute, -1)  # judged as a send not counted yet, like every other
        return key

    async def _give_back(self, key: _Key, minute: int) -> None:
        """A send already in the store that is refused after all: taken out at once (rare: a
        held range is not exchanged), else with the next sync."""
        try:
            await self._write({(*key, minute): -1})
        except Exception:
            minutes = self._pending.setdefault(key, {})
            minutes[minute] = minutes.get(minute, 0) - 1

    def _policy(self, account: Account) -> AccountRules:
        cached = self._rules.get(account.id)
        if cached is None or cached[0] is not account.settings:  # a new copy of the account
            cached = (account.settings, account_rules(account, self._options))
            self._rules[account.id] = cached
        return cached[1]

    def _judge(self, admission: Admission, policy: AccountRules, look: _Look) -> list[Trip]:
        """Every rule's trip for this send, refusing rules first in a fixed order."""
        limits = self._limits
        modes = policy.modes
        trips: list[Trip] = []
        account_id, country_code = admission.account_id, admission.country_code
        destination, ip_key = admission.destination, admission.client_ip
        prefix, minute, velocity, counters = look.prefix, look.minute, look.velocity, look.counters
        shown = rules.shown_prefix(prefix, limits.wildcard_digits)
        if policy.countries is not None and modes[Rule.COUNTRY] is not Mode.OFF:
            trip = rules.check_country(country_code, policy.countries)
            if trip:
                trips.append(trip)
        # one C call for the common answer (no range of the list)
        if destination.startswith(policy.high_cost) and modes[Rule.HIGH_COST] is not Mode.OFF:
            trip = rules.check_high_cost(destination, policy.high_cost)
            if trip:
                trips.append(trip)
        if self._holds:
            self._held_trips(account_id, modes, shown, country_code, ip_key, look.now, trips)
        if velocity is not None and velocity.in_window + 1 > velocity.limit:
            trip = rules.check_prefix_velocity(prefix, velocity.in_window, velocity.before, limits)
            if trip:
                trips.append(trip)
        address = counters.address
        if ip_key is not None and address is not None and modes[Rule.CLIENT_IP] is not Mode.OFF:
            in_window = address.total(minute - limits.ip_window_s // 60 + 1, minute)
            if in_window + 1 > limits.ip_limit:
                trip = rules.check_client_ip(ip_key, in_window, limits)
                if trip:
                    trips.append(trip)
        if modes[Rule.CONVERSION] is not Mode.OFF:
            trip = self._conversion(account_id, shown, country_code, minute, counters)
            if trip:
                trips.append(trip)
        return trips

    def _held_trips(
        self,
        account_id: str,
        modes: dict[Rule, Mode],
        shown: str,
        country_code: str,
        ip_key: str | None,
        now: datetime,
        trips: list[Trip],
    ) -> None:
        """The holds (of rules that are on) this send's range, country or address is under."""
        for rule, subject in (
            (Rule.PREFIX_VELOCITY, shown),
            (Rule.CONVERSION, shown),
            (Rule.CONVERSION, f"+{country_code}"),
            (Rule.CLIENT_IP, ip_key),
        ):
            if subject is None or modes[rule] is not Mode.ON:
                continue
            hold = self._holds.get((account_id, rule.value, subject))
            if hold is not None and hold.until is not None and hold.until > now:
                trips.append(_held(hold))

    def _conversion(
        self, account_id: str, shown: str, country_code: str, minute: int, counters: _Counters
    ) -> Trip | None:
        """The range's conversion, then the country's. A country's figures (and the account's
        normal) move with other processes' counts and verifications, not with this send (its
        send is not settled yet): they are judged once per sync and minute."""
        limits = self._limits
        first = minute - limits.conversion_window_s // 60 + 1
        settled = minute - -(-limits.conversion_grace_s // 60)  # sends that had time to verify
        sends = counters.range.total(first, settled)
        if sends >= limits.conversion_min_prefix_sends:  # a smaller sample (most ranges): no
            if self._verifications:
                self._count_verifications()
            seen = rules.Conversion(sends, counters.range_verified.total(first, minute))
            trip = rules.check_conversion(
                {shown: (seen, limits.conversion_min_prefix_sends)},
                self._normal(account_id, minute, counters),
                limits,
            )
            if trip is not None:
                return trip
        stamp = (minute, self._generation)
        key = (account_id, country_code)
        cached = self._country_verdicts.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        trip = None
        if self._verifications:
            self._count_verifications()
        sends = counters.country.total(first, settled)
        if sends >= limits.conversion_min_country_sends:
            seen = rules.Conversion(sends, counters.country_verified.total(first, minute))
            trip = rules.check_conversion(
                {f"+{country_code}": (seen, limits.conversion_min_country_sends)},
                self._normal(account_id, minute, counters),
                limits,
            )
        self._country_verdicts[key] = (stamp, trip)
        return trip

    def _normal(self, account_id: str, minute: int, counters: _Counters) -> float:
        stamp = (minute, self._generation)
        cached = self._normals.get(account_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        limits = self._limits
        start = minute - limits.baseline_s // 60 + 1
        settled = minute - -(-limits.conversion_grace_s // 60)
        baseline = rules.Conversion(
            counters.sends.total(start, settled), counters.verified.total(start, minute)
        )
        normal = rules.normal_conversion(baseline, limits)
        self._normals[account_id] = (stamp, normal)
        return normal

    async def _refuse(self, admission: Admission, trip: Trip, now: datetime) -> None:
        """Record the refusal (a new record, or one more hit on its hold) and raise."""
        key = (admission.account_id, trip.rule.value, trip.subject)
        existing = self._holds.get(key) if trip.hold_s is not None else self._static.get(key)
        if isinstance(trip, _HeldTrip):
            existing = trip.block
        if existing is not None and existing.until is not None and existing.until > now:
            block = existing
            count, _ = self._hits.get(block.id, (0, now))
            self._hits[block.id] = (count + 1, now)
        else:
            hold = trip.hold_s if trip.hold_s is not None else None
            until = now + timedelta(seconds=hold or _STATIC_RECORD_S)
            block = FraudBlock(
                id=new_block_id(),
                account_id=admission.account_id,
                rule=trip.rule.value,
                action="blocked",
                subject=trip.subject,
                destination=admission.destination,
                country_code=admission.country_code,
                client_ip=admission.client_ip,
                verification_id=None,
                reason=trip.reason,
                figures=trip.figures,
                created_at=now,
                until=until if hold is not None else None,
                last_hit_at=now,
            )
            try:
                await self._store.add_blocks([block])
            except Exception:  # refused all the same; the hold still applies here
                log.exception("recording a fraud block failed", rule=trip.rule.value)
            if hold is not None:
                self._holds[key] = block
            else:
                self._static[key] = _with_until(block, until)
        reason = trip.reason if isinstance(trip, _HeldTrip) else block.reason
        message = f"blocked by fraud guard ({trip.rule.value}): {reason}; block id {block.id}"
        if trip.rule is Rule.COUNTRY:
            raise FraudCountryError(message, block_id=block.id)
        retry = None
        if block.until is not None:
            retry = max(1, int((block.until - now).total_seconds()))
        raise FraudBlockedError(message, block_id=block.id, retry_after_s=retry)

    def _uncount(self, admission: Admission) -> None:
        for key in admission.counted:
            self._count(key, admission.minute, -1)
        if admission.new_number is not None:
            number, last = admission.new_number
            if last is None:
                self._numbers.pop(number, None)
            else:
                self._numbers[number] = last

    async def _record_monitored(self, admission: Admission, verification_id: int) -> None:
        if not admission.monitored:
            return
        now = self._clock.now()
        records = [
            FraudBlock(
                id=new_block_id(), account_id=admission.account_id, rule=trip.rule.value,
                action="monitored", subject=trip.subject, destination=admission.destination,
                country_code=admission.country_code, client_ip=admission.client_ip,
                verification_id=verification_id, reason=trip.reason, figures=trip.figures,
                created_at=now, until=None, last_hit_at=now,
            )
            for trip in admission.monitored
        ]  # fmt: skip
        try:
            await self._store.add_blocks(records)
        except Exception:  # the send is committed: losing its note must not fail it
            log.exception("recording monitor-only fraud hits failed", count=len(records))

    def verified(self, account_id: str, destination: str, country_code: str) -> None:
        """A code was verified: the conversion monitor's numerator."""
        if not self._options.enabled:  # nobody reads these counts: they would pile up here
            return
        minute = int(self._clock.now().timestamp()) // 60
        # counted in a batch before anything reads them (the conversion figures, a sync): a
        # code check then costs an append, not three counters' lookups
        self._verifications.append((account_id, destination, country_code, minute))
        if self._background is None:
            self._sync_soon()

    def _count_verifications(self) -> None:
        done, self._verifications = self._verifications, []
        digits = self._limits.wildcard_digits
        for account_id, destination, country_code, minute in done:
            prefix = rules.prefix_of(destination, digits)
            for name in ("av", f"pv:{prefix}", f"cv:{country_code}"):
                self._count((account_id, name), minute, 1)

    def _sync_soon(self) -> None:
        """A process that checks codes but screens no sends still sends its counts: a sync in
        the background once the copy is two intervals old (one that screens syncs inline,
        every interval, and keeps the sync's cost on the send path that needs it)."""
        if self._background is not None or (
            time.monotonic() - self._synced_at < 2 * self._options.sync_interval_s
        ):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop (a script): the next screen syncs
            return
        self._background = loop.create_task(self._background_sync())

    async def _background_sync(self) -> None:
        try:
            await self._refresh()
        except Exception:  # kept for the next sync; the send path fails closed on its own
            log.warning("fraud guard: background sync failed", exc_info=True)
        finally:
            self._background = None

    # -- the shared counters ---------------------------------------------------------------

    def _count(self, key: _Key, minute: int, count: int) -> None:
        self._count_in(key, self._series.get(key), minute, count)

    def _count_in(self, key: _Key, series: _Series | None, minute: int, count: int) -> None:
        """Add to the counter `key` (loaded as `series`, if it is) and to what the next sync
        sends, but an address seen once: its counts are its own until it comes back."""
        if series is not None:
            series.add(minute, count)
            if series.local:
                return
        minutes = self._pending.get(key)
        if minutes is None:
            minutes = self._pending[key] = {}
        minutes[minute] = minutes.get(minute, 0) + count

    def _sync_due(self) -> bool:
        return time.monotonic() - self._synced_at >= self._options.sync_interval_s

    async def _refresh(self) -> None:
        """Exchange counts with the store when the copy is older than `sync_interval_s`."""
        if not self._sync_due():
            return
        async with self._lock:
            started = time.monotonic()
            if started - self._synced_at < self._options.sync_interval_s:
                return
            await self._sync()
            self._synced_at = started

    async def sync(self) -> None:
        """Send this process's counts and refusals, read the others' (also at shutdown)."""
        async with self._lock:
            await self._sync()
            self._synced_at = time.monotonic()

    async def close(self) -> None:
        if self._background is not None:
            await self._background
        await self._counters.close()

    async def _sync(self) -> None:
        if self._verifications:
            self._count_verifications()
        now = self._clock.now()
        minute = int(now.timestamp()) // 60
        totals = await self._send_counts()
        await self._flush_hits()
        oldest = minute - (self._limits.baseline_s // 60) - 2
        # The upsert answered the written buckets' totals: between minute changes only the
        # counters used but not written are read back; at a minute's first sync every used one
        # (the other processes' last counts of the minutes before, sent after our writes).
        rollover = minute != self._synced_minute
        self._synced_minute = minute
        written = self._apply_totals(totals)
        await self._read_back(minute, oldest, set() if rollover else written)
        holds = await self._store.active_holds(now)
        self._holds = {(b.account_id, b.rule, b.subject): b for b in holds}
        if time.monotonic() - self._pruned_at > _PRUNE_EVERY_S:
            self._pruned_at = time.monotonic()
            await self._counters.prune(oldest - 60)
            self._static = {k: b for k, b in self._static.items() if b.until and b.until > now}
        window = self._limits.prefix_window_s // 60
        if len(self._numbers) > 10_000:
            self._numbers = {k: m for k, m in self._numbers.items() if minute - m < window}
        if rollover:
            self._forget(oldest)
        self._generation += 1

    async def _send_counts(self) -> dict[Bucket, int]:
        """Write the counts this process took since the last sync; answer the store's totals.

        An address seen once here keeps its count in its series, not in `_pending` (most
        addresses come once: a row each would be most of the sync's writes); at its second
        send here its history is read and its counts join `_pending`. So each process may
        hold back one send per address from the others: an address can pass its limit by
        one send per other process."""
        sent, self._pending = self._pending, {}
        increments = {
            (k[0], k[1], m): n for k, minutes in sent.items() for m, n in minutes.items() if n
        }
        try:
            # the accounts used without a count to send: their write counts read all the same
            return await self._write(increments, probe={key[0] for key in self._used})
        except BaseException:
            for key, minutes in sent.items():
                for minute, count in minutes.items():
                    again = self._pending.setdefault(key, {})
                    again[minute] = again.get(minute, 0) + count
            raise

    async def _write(
        self, increments: dict[Bucket, int], *, probe: Iterable[str] = ()
    ) -> dict[Bucket, int]:
        """`counters.add` of `increments` and of each account's write count (1 for an
        account written for, 0 for one in `probe` only); answers the buckets' totals. A
        count that moved by more than that since this process last saw it: another process
        wrote for the account in between (`_foreign`)."""
        bumps = dict.fromkeys(probe, 0)
        for account_id, _, _ in increments:
            bumps[account_id] = 1
        if not bumps:
            return {}
        for account_id, bump in bumps.items():
            increments[(account_id, WRITES, WRITES_MINUTE)] = bump
        totals = await self._counters.add(increments)
        minute = int(self._clock.now().timestamp()) // 60
        for account_id, bump in bumps.items():
            count = totals.pop((account_id, WRITES, WRITES_MINUTE), None)
            seen = self._writes.get(account_id)
            # Each write adds 1, so a count one above the last seen (or the same, probed)
            # leaves no room for another process's write; anything else, or no count (a
            # fallback store's), is taken as one.
            if count is None or seen is None or count != seen[0] + bump:
                since = minute if seen is None else min(minute, seen[1])
                self._foreign[account_id] = min(since, self._foreign.get(account_id, since))
                self._foreign_at[account_id] = self._generation
            if count is not None:
                self._writes[account_id] = (count, minute)
        return totals

    def _apply_totals(self, totals: Mapping[Bucket, int]) -> set[_Key]:
        """The store's totals of the buckets just sent plus what this process counted since
        (during the write); answers the counters they belong to."""
        written: set[_Key] = set()
        for (account_id, name, minute), total in totals.items():
            key = (account_id, name)
            written.add(key)
            series = self._series.get(key)
            if series is None:
                continue
            value = total + self._pending.get(key, {}).get(minute, 0)
            if series.buckets.get(minute, 0) != value:
                series.put(minute, value)
        return written

    def _forget(self, oldest: int) -> None:
        """Once a minute: buckets older than the longest period go, and counters unused for
        longer than a window (read again on their next use)."""
        idle_s = max(self._limits.prefix_window_s, self._limits.conversion_window_s,
                     self._limits.ip_window_s)  # fmt: skip
        now_s = time.monotonic()
        idle = []
        for key, series in self._series.items():
            if now_s - series.used > idle_s:
                idle.append(key)
            else:
                series.forget_before(oldest)
        for key in idle:
            del self._series[key]

    async def _read_back(self, minute: int, oldest: int, skip: set[_Key]) -> None:
        """The other processes' counts, for the accounts they wrote for (`_foreign`): the
        counters used since the last sync (but those in `skip`, whose latest minute the write
        answered, when the writes were seen this minute) from a few minutes before those
        writes; the whole history of those used again after such writes (`_cold`). Costs what
        was used since the last sync, not what the process holds; nothing in a process that
        is the only one sending for its accounts."""
        used, self._used = self._used, set()
        foreign, self._foreign = self._foreign, {}
        cold, self._cold = self._cold, {}
        try:
            hot: dict[str, list[str]] = {}
            series_of = self._series.get
            for key in used:
                seen = foreign.get(key[0])
                if seen is None or (seen == minute and key in skip):
                    continue
                series = series_of(key)
                if series is not None and not series.local:
                    hot.setdefault(key[0], []).append(key[1])
            for account_id, names in hot.items():
                since = max(oldest, foreign[account_id] - _RECENT_MINUTES)
                await self._read_into(account_id, names, since, minute)
            for account_id, unread in cold.items():
                await self._read_into(account_id, sorted(unread), oldest, minute)
        except BaseException:  # read at the next sync
            self._used |= used
            for account_id, seen in foreign.items():
                self._foreign[account_id] = min(seen, self._foreign.get(account_id, seen))
            for account_id, unread in cold.items():
                self._cold.setdefault(account_id, set()).update(unread)
            raise

    async def _read_into(self, account_id: str, names: list[str], since: int, minute: int) -> None:
        for chunk in range(0, len(names), _READ_CHUNK):
            part = names[chunk : chunk + _READ_CHUNK]
            read = await self._counters.read(account_id, part, since)
            self._merge(account_id, part, read, since, minute)

    def _merge(
        self,
        account_id: str,
        names: Sequence[str],
        read: Mapping[str, Mapping[int, int]],
        recent: int,
        minute: int,
    ) -> None:
        """The store's latest buckets (which hold every process's sends so far) plus what this
        process counted since it sent its own."""
        for name in names:
            series = self._series.get((account_id, name))
            if series is None:
                continue
            stored = read.get(name, {})
            local = self._pending.get((account_id, name), {})
            buckets = series.buckets
            # `recent`: the first minute read; a minute neither side has stays absent
            for m in [m for m in buckets if recent <= m <= minute and m not in stored]:
                value = local.get(m, 0)
                if buckets[m] != value:
                    series.put(m, value)
            for m, count in stored.items():
                value = count + local.get(m, 0)
                if buckets.get(m, 0) != value:
                    series.put(m, value)

    async def _load(self, account_id: str, names: list[str]) -> list[_Series]:
        """The counters `names`, their history read first where this process has not used
        them yet."""
        now_s = time.monotonic()
        found, missing, unread = self._touch(account_id, names, now_s)
        if missing or unread:
            await self._load_rest(account_id, missing, unread, now_s)
            return [self._series[(account_id, name)] for name in names]
        return found

    def _touch(
        self, account_id: str, names: list[str], now_s: float
    ) -> tuple[list[_Series], list[str], list[str]]:
        """The counters of `names` this process has, marked used; the names it has not; the
        addresses seen once whose history is to be read."""
        loaded = self._series
        generation = self._generation
        used = self._used
        found = []
        missing = []
        unread = []
        for name in names:
            key = (account_id, name)
            series = loaded.get(key)
            if series is None:
                missing.append(name)
                continue
            found.append(series)
            series.used = now_s
            if series.local:
                unread.append(name)
            if series.generation != generation:  # its first use since the last sync
                if series.generation < self._foreign_at.get(account_id, -1) and not series.local:
                    # another process wrote for the account while it went unused here: judged
                    # on what this process has, and the next sync reads its whole history
                    self._cold.setdefault(account_id, set()).add(name)
                series.generation = generation
                used.add(key)
        return found, missing, unread

    async def _load_rest(
        self, account_id: str, missing: list[str], unread: list[str], now_s: float
    ) -> None:
        if unread:
            await self._read_addresses(account_id, unread)
        if not missing:
            return
        generation = self._generation
        # An address is new on most sends, and most are never seen again: its first send is
        # judged on this process's counts, its history read before a second one here (the
        # syncs write its counts for the other processes all the same).
        for name in [n for n in missing if n.startswith("ip:")]:
            # its unsent counts (if any) are held in it from now, like the ones to come
            held = self._pending.pop((account_id, name), {})
            series = _Series(held, generation, local=True)
            series.used = now_s
            self._series.setdefault((account_id, name), series)
            missing.remove(name)
        if missing:
            async with self._lock:
                to_read = [n for n in missing if (account_id, n) not in self._series]
                if to_read:
                    minute = int(self._clock.now().timestamp()) // 60
                    since = minute - self._limits.baseline_s // 60 - 1
                    read = await self._counters.read(account_id, sorted(to_read), since)
                    for name in to_read:
                        self._series[(account_id, name)] = _Series(
                            self._pending_of(account_id, name, read.get(name, {})),
                            self._generation,
                        )
        for name in missing:  # after the awaits: a sync may have started a new `_used`
            key = (account_id, name)
            self._series[key].used = now_s
            self._used.add(key)

    async def _read_addresses(self, account_id: str, names: list[str]) -> None:
        """The history of addresses seen once here, at their second send: their counts kept
        here join the unsent ones (the next sync writes them), the store's are merged in."""
        minute = int(self._clock.now().timestamp()) // 60
        since = minute - self._limits.ip_window_s // 60 - 1
        read = await self._counters.read(account_id, names, since)
        for name in names:  # after the read: one that fails leaves them local, tried again
            key = (account_id, name)
            series = self._series[key]
            if series.local:
                series.local = False
                minutes = self._pending.setdefault(key, {})
                for m, n in series.buckets.items():
                    minutes[m] = minutes.get(m, 0) + n
        self._merge(account_id, names, read, since, minute)

    def _pending_of(
        self, account_id: str, name: str, stored: Mapping[int, int] | None = None
    ) -> dict[int, int]:
        buckets = dict(stored or {})
        for m, n in self._pending.get((account_id, name), {}).items():
            buckets[m] = buckets.get(m, 0) + n
        return buckets

    # -- safe lists and records ------------------------------------------------------------

    def _cached_safe(self, account_id: str) -> tuple[str, ...] | None:
        cached = self._safe.get(account_id)
        if cached is not None and time.monotonic() - cached[0] < self._settings_cache_s:
            return cached[1]
        return None

    async def _safe_entries(self, account_id: str) -> tuple[str, ...]:
        cached = self._cached_safe(account_id)
        if cached is not None:
            return cached
        entries = tuple(await self._store.safe_list(account_id))
        self._safe[account_id] = (time.monotonic(), entries)
        return entries

    async def safe_list(self, account_id: str) -> list[str]:
        return await self._store.safe_list(account_id)

    async def replace_safe_list(self, account_id: str, entries: Sequence[str]) -> list[str]:
        """Replace the account's safe list; raises 400 naming a malformed entry."""
        if len(entries) > 10_000:
            raise InvalidRequestError("at most 10000 safe-list entries")
        cleaned: set[str] = set()
        for entry in entries:
            try:
                cleaned.add(rules.normalise_safe_entry(entry))
            except ValueError as exc:
                raise InvalidRequestError(f"safe list: {exc}") from None
        await self._store.replace_safe_list(account_id, sorted(cleaned), self._clock.now())
        self._safe.pop(account_id, None)
        return sorted(cleaned)

    async def blocks(self, account_id: str, query: BlockQuery) -> list[FraudBlock]:
        await self._flush_hits()
        return await self._store.list_blocks(account_id, query)

    async def hits_for(self, account_id: str, verification_id: int) -> list[FraudBlock]:
        """The monitor-only records of one verification."""
        return await self._store.list_blocks(
            account_id, BlockQuery(verification_id=verification_id, limit=50)
        )

    async def _flush_hits(self) -> None:
        hits, self._hits = self._hits, {}
        if hits:
            await self._store.add_hits(hits)


@dataclass(frozen=True, slots=True, kw_only=True)
class _HeldTrip(Trip):
    block: FraudBlock


def _held(block: FraudBlock) -> Trip:
    until = block.until.isoformat() if block.until else "?"
    return _HeldTrip(
        rule=Rule(block.rule),
        subject=block.subject,
        reason=f"{block.reason}; held until {until}",
        figures=block.figures,
        hold_s=1,
        block=block,
    )


def _with_until(block: FraudBlock, until: datetime) -> FraudBlock:
    return replace(block, until=until)


def block_view(block: FraudBlock) -> Mapping[str, Any]:
    return {
        "blockId": block.id,
        "rule": block.rule,
        "action": block.action,
        "subject": block.subject,
        "destination": block.destination,
        "countryCode": block.country_code,
        "clientIp": block.client_ip,
        "verificationId": str(block.verification_id) if block.verification_id else None,
        "reason": block.reason,
        "figures": block.figures,
        "createdAt": block.created_at.isoformat(),
        "until": block.until.isoformat() if block.until else None,
        "hits": block.hits,
        "lastHitAt": block.last_hit_at.isoformat() if block.last_hit_at else None,
    }
