"""The fraud guard end to end: pumping, monitor-only, fail closed, countries, IPs, safe lists."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.conftest import SettingsFactory, open_client
from tests.e2e.conftest import PASSWORD

from switchboard.bootstrap import Container, build_container
from switchboard.clock import FrozenClock
from switchboard.fraud.guard import FraudBlockedError
from switchboard.fraud.store import WRITES, WRITES_MINUTE, BlockQuery, Bucket, CounterStore
from switchboard.services.verification import SendRequest
from switchboard.storage.sql.tables import fraud_blocks, fraud_counters, messages, verifications
from switchboard.testing.client import MessageCentralClient

ATTACK_RANGE = 9876500000  # +919876500xxx: one 1k prefix
NORMAL = [9100000007 + i * 1000 for i in range(200)]  # each in a prefix of its own


class Outbox:
    """Reads the sandbox carrier's codes page by page (the attack's sends fill the first)."""

    def __init__(self, mc: MessageCentralClient) -> None:
        self._mc = mc
        self._after = 0
        self.codes: dict[str, str] = {}

    async def code(self, destination: str, attempts: int = 400) -> str:
        for _ in range(attempts):
            if destination in self.codes:
                return self.codes.pop(destination)
            response = await self._mc.http.get(
                "/api/v1/sandbox/outbox",
                params={"afterId": self._after, "limit": 500},
                headers=self._mc.headers(),
            )
            for entry in response.json()["data"]["messages"]:
                self._after = max(self._after, entry["id"])
                match = re.search(r"\b(\d{4,8})\b", entry["text"])
                if match:
                    self.codes[entry["destination"]] = match.group(1)
            if destination not in self.codes:
                import asyncio

                await asyncio.sleep(0.01)
        return self.codes.pop(destination)


@pytest.fixture
async def guarded(
    make_settings: SettingsFactory, clock: FrozenClock
) -> AsyncIterator[Callable[..., Any]]:
    """A container with the settings given, customer C-1 and its client."""
    opened: list[tuple[Container, httpx.AsyncClient]] = []

    async def start(**overrides: Any) -> tuple[Container, MessageCentralClient]:
        built = build_container(make_settings(**overrides), clock=clock)
        await built.start(run_workers=True)
        await built.accounts.create_customer(
            email="dev@example.com", password=PASSWORD, customer_id="C-1", name="Acme"
        )
        http = await open_client(built)
        opened.append((built, http))
        api = MessageCentralClient(http, "C-1", PASSWORD)
        await api.fetch_token()
        return built, api

    yield start
    for built, http in opened:
        await http.aclose()
        await built.stop()


async def _blocks(mc: MessageCentralClient, **params: Any) -> list[dict[str, Any]]:
    response = await mc.http.get("/api/v1/fraud/blocks", params=params, headers=mc.headers())
    assert response.status_code == 200, response.text
    blocks: list[dict[str, Any]] = response.json()["data"]["blocks"]
    return blocks


def _otp_to(number: int, client_ip: str | None = None) -> SendRequest:
    return SendRequest(
        country_code="91", mobile_number=str(number), flow_type="SMS", client_ip=client_ip
    )


async def _count(container: Container, table: sa.Table) -> int:
    async with container.database.read() as connection:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


@pytest.mark.timeout(240)
async def test_pumping_attack_on_one_prefix_is_blocked_early_and_normal_users_go_through(
    guarded: Callable[..., Any], clock: FrozenClock
) -> None:
    container, mc = await guarded()
    outbox = Outbox(mc)
    attack_answers: list[dict[str, Any]] = []
    normal_ok = 0
    for i in range(2000):
        clock.advance(0.25)
        number = ATTACK_RANGE + i % 500
        # a botnet: the addresses rotate, so no per-IP limit catches it
        sent = await mc.send_otp(mobileNumber=str(number), clientIp=f"203.0.113.{i % 250}")
        attack_answers.append(sent.json())
        if i % 10 == 9:
            user = NORMAL[i // 10]
            answer = (
                await mc.send_otp(mobileNumber=str(user), clientIp=f"10.1.{i // 10}.1")
            ).json()
            assert answer["responseCode"] == 200, answer
            code = await outbox.code(f"+91{user}")
            checked = (await mc.validate(answer["data"]["verificationId"], code)).json()
            assert checked["responseCode"] == 200, checked
            normal_ok += 1
    assert normal_ok == 200
    refused = [n for n, a in enumerate(attack_answers) if a["responseCode"] != 200]
    assert refused
    assert refused[0] < 100
    # once blocked, the prefix stays blocked: every later send of the attack is refused
    assert refused == list(range(refused[0], 2000))
    last = attack_answers[-1]
    assert last["responseCode"] == 800
    assert "blocked by fraud guard (prefix_velocity)" in last["errorMessage"]
    assert "numbers in +919876500xxx" in last["errorMessage"]
    block_id = re.search(r"fb_[0-9a-f]+", last["errorMessage"])
    assert block_id is not None
    # a refused send leaves no verification and no message behind
    assert await _count(container, verifications) == refused[0] + 200
    assert await _count(container, messages) == refused[0] + 200
    [block] = await _blocks(mc, rule="prefix_velocity")
    assert block["blockId"] == block_id.group(0)
    assert block["subject"] == "+919876500xxx"
    assert block["figures"]["sends"] == refused[0] + 1
    assert block["hits"] == 2000 - refused[0]
    assert await _blocks(mc, rule="client_ip") == []


async def test_monitor_only_blocks_nothing_and_records_every_hit(
    guarded: Callable[..., Any], clock: FrozenClock
) -> None:
    container, mc = await guarded()
    await container.accounts.update("C-1", settings={"fraud.prefix_velocity": "monitor"})
    ids = []
    for i in range(30):
        clock.advance(1)
        answer = (await mc.send_otp(mobileNumber=str(ATTACK_RANGE + i))).json()
        assert answer["responseCode"] == 200, answer
        ids.append(answer["data"]["verificationId"])
    hits = await _blocks(mc, action="monitored")
    assert len(hits) == 20  # sends 11 to 30 passed the floor of 10 per hour
    assert {h["rule"] for h in hits} == {"prefix_velocity"}
    assert await _blocks(mc, action="blocked") == []
    view = (await mc.http.get(f"/api/v1/verifications/{ids[-1]}", headers=mc.headers())).json()
    [hit] = view["data"]["fraud"]
    assert hit["rule"] == "prefix_velocity"
    assert hit["action"] == "monitored"
    assert hit["figures"]["sends"] == 30
    early = (await mc.http.get(f"/api/v1/verifications/{ids[0]}", headers=mc.headers())).json()
    assert early["data"]["fraud"] == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_unreadable_counters_fail_closed_unless_the_account_fails_open(
    guarded: Callable[..., Any],
) -> None:
    container, mc = await guarded()
    async with container.database.write() as connection:
        await connection.execute(sa.text("DROP TABLE fraud_counters"))
    refused = (await mc.send_otp(mobileNumber="9876543210")).json()
    assert refused["responseCode"] == 800
    assert "fraud check unavailable" in refused["errorMessage"]
    assert await _count(container, verifications) == 0
    await container.accounts.update("C-1", settings={"fraud.fail_open": True})
    assert (await mc.send_otp(mobileNumber="9876543210")).json()["responseCode"] == 200


async def test_a_country_outside_the_permissions_gets_511_with_a_record(
    guarded: Callable[..., Any],
) -> None:
    container, mc = await guarded()
    await container.accounts.update("C-1", settings={"fraud_countries": ["91"]})
    assert (await mc.send_otp(mobileNumber="9876543210")).json()["responseCode"] == 200
    uk = (await mc.send_otp(countryCode="44", mobileNumber="7911123456")).json()
    assert uk["responseCode"] == 511
    assert "blocked by fraud guard (country)" in uk["errorMessage"]
    [block] = await _blocks(mc, rule="country")
    assert block["subject"] == "44"
    assert block["figures"]["permitted"] == ["91"]
    assert block["blockId"] in uk["errorMessage"]


async def test_a_refusal_by_the_allowed_countries_is_recorded_as_a_country_block(
    guarded: Callable[..., Any],
) -> None:
    container, mc = await guarded()
    await container.accounts.update("C-1", settings={"allowed_countries": ["91"]})
    uk = (await mc.send_otp(countryCode="44", mobileNumber="7911123456")).json()
    assert uk["responseCode"] == 511
    assert "blocked by fraud guard (country)" in uk["errorMessage"]
    again = (await mc.send_otp(countryCode="44", mobileNumber="7911123457")).json()
    assert again["responseCode"] == 511
    [block] = await _blocks(mc, rule="country")
    assert block["blockId"] in uk["errorMessage"]
    assert block["blockId"] in again["errorMessage"]  # one record for the hour, two hits
    assert block["hits"] == 2
    assert block["subject"] == "44"
    assert block["destination"] == "+447911123456"
    assert block["figures"] == {
        "countryCode": "44", "permitted": ["91"], "setting": "allowed_countries"
    }  # fmt: skip
    assert "not permitted" in block["reason"]
    assert await _count(container, verifications) == 0
    page = await container.fraud.blocks("C-1", BlockQuery(rule="country"))
    assert [b.id for b in page] == [block["blockId"]]


async def test_an_account_without_a_guard_gets_the_plain_511_for_a_country(
    guarded: Callable[..., Any],
) -> None:
    container, mc = await guarded(fraud={"enabled": False})
    await container.accounts.update("C-1", settings={"allowed_countries": ["91"]})
    uk = (await mc.send_otp(countryCode="44", mobileNumber="7911123456")).json()
    assert uk["responseCode"] == 511
    assert "not enabled for this account" in uk["errorMessage"]
    async with container.database.read() as connection:
        assert await connection.scalar(sa.select(sa.func.count()).select_from(fraud_blocks)) == 0


async def test_more_than_ten_sends_from_one_client_ip_in_an_hour_are_refused(
    guarded: Callable[..., Any], clock: FrozenClock
) -> None:
    _, mc = await guarded()
    for i in range(10):
        clock.advance(5)
        sent = await mc.send_otp(mobileNumber=str(NORMAL[i]), clientIp="198.51.100.7")
        assert sent.json()["responseCode"] == 200
    eleventh = (await mc.send_otp(mobileNumber=str(NORMAL[10]), clientIp="198.51.100.7")).json()
    assert eleventh["responseCode"] == 800
    assert "(client_ip)" in eleventh["errorMessage"]
    other = await mc.send_otp(mobileNumber=str(NORMAL[11]), clientIp="198.51.100.8")
    assert other.json()["responseCode"] == 200
    bad = (await mc.send_otp(mobileNumber=str(NORMAL[12]), clientIp="not-an-ip")).json()
    assert bad["responseCode"] == 400
    assert "clientIp" in bad["errorMessage"]
    # the hold ends after an hour
    clock.advance(3660)
    await mc.fetch_token()  # the token lives an hour
    later = await mc.send_otp(mobileNumber=str(NORMAL[13]), clientIp="198.51.100.7")
    assert later.json()["responseCode"] == 200


async def test_a_prefix_block_holds_twelve_hours(
    guarded: Callable[..., Any], clock: FrozenClock
) -> None:
    _, mc = await guarded()
    for i in range(10):
        clock.advance(5)
        assert (await mc.send_otp(mobileNumber=str(ATTACK_RANGE + i))).json()["responseCode"] == 200
    assert (await mc.send_otp(mobileNumber=str(ATTACK_RANGE + 10))).json()["responseCode"] == 800
    clock.advance(43140)
    await mc.fetch_token()  # the token lives an hour
    held = (await mc.send_otp(mobileNumber=str(ATTACK_RANGE + 11))).json()
    assert held["responseCode"] == 800
    assert "held until" in held["errorMessage"]
    clock.advance(120)
    await mc.fetch_token()
    assert (await mc.send_otp(mobileNumber=str(ATTACK_RANGE + 12))).json()["responseCode"] == 200


async def test_a_safe_listed_prefix_bypasses_the_guard(guarded: Callable[..., Any]) -> None:
    _, mc = await guarded()
    put = await mc.http.put(
        "/api/v1/fraud/safe-list", json={"entries": ["+919876500*"]}, headers=mc.headers()
    )
    assert put.status_code == 200
    assert put.json()["data"]["entries"] == ["+919876500*"]
    for i in range(15):
        assert (await mc.send_otp(mobileNumber=str(ATTACK_RANGE + i))).json()["responseCode"] == 200
    assert await _blocks(mc) == []
    got = await mc.http.get("/api/v1/fraud/safe-list", headers=mc.headers())
    assert got.json()["data"]["entries"] == ["+919876500*"]
    bad = await mc.http.put(
        "/api/v1/fraud/safe-list", json={"entries": ["98765"]}, headers=mc.headers()
    )
    assert bad.json()["responseCode"] == 400
    assert "98765" in bad.json()["errorMessage"]


async def test_a_high_cost_range_is_refused(guarded: Callable[..., Any]) -> None:
    _, mc = await guarded(fraud={"high_cost_prefixes": ["+9198765"]})
    refused = (await mc.send_otp(mobileNumber="9876512345")).json()
    assert refused["responseCode"] == 800
    assert "(high_cost)" in refused["errorMessage"]
    assert (await mc.send_otp(mobileNumber="9123412345")).json()["responseCode"] == 200


async def test_collapsed_conversion_in_a_country_pauses_it(
    guarded: Callable[..., Any], clock: FrozenClock
) -> None:
    _, mc = await guarded()
    outbox = Outbox(mc)
    for i in range(60):
        user = NORMAL[i]
        answer = (await mc.send_otp(mobileNumber=str(user))).json()
        assert answer["responseCode"] == 200, answer
        if i < 5:
            code = await outbox.code(f"+91{user}")
            assert (await mc.validate(answer["data"]["verificationId"], code)).status_code == 200
    clock.advance(180)  # the sends had time to be answered
    paused = (await mc.send_otp(mobileNumber=str(NORMAL[100]))).json()
    assert paused["responseCode"] == 800
    assert "(conversion)" in paused["errorMessage"]
    assert "5 of 60 codes to +91 verified" in paused["errorMessage"]


async def test_healthy_conversion_pauses_nothing(
    guarded: Callable[..., Any], clock: FrozenClock
) -> None:
    _, mc = await guarded()
    outbox = Outbox(mc)
    for i in range(60):
        user = NORMAL[i]
        answer = (await mc.send_otp(mobileNumber=str(user))).json()
        if i < 30:
            code = await outbox.code(f"+91{user}")
            assert (await mc.validate(answer["data"]["verificationId"], code)).status_code == 200
    clock.advance(180)
    assert (await mc.send_otp(mobileNumber=str(NORMAL[100]))).json()["responseCode"] == 200


async def test_an_attack_spread_over_two_processes_is_judged_on_both_counts_near_the_limit(
    make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    # A sync interval of a minute: without the exchange near the limit each process would see
    # only its own half of the range's numbers, and the attack would pass the floor twice over.
    settings = make_settings(fraud={"sync_interval_s": 60})
    first, second = (build_container(settings, clock=clock) for _ in range(2))
    await first.start(run_workers=False)
    await second.start(run_workers=False)
    try:
        account = await first.accounts.create_customer(
            email="dev@example.com", password=PASSWORD, customer_id="C-1", name="Acme"
        )
        answers: list[int] = []
        for i in range(30):
            clock.advance(1)
            process = (first, second)[i % 2]
            try:
                await process.verification.start(
                    account,
                    _otp_to(ATTACK_RANGE + i),
                )
                answers.append(200)
            except FraudBlockedError:
                answers.append(800)
        floor = first.fraud.limits.prefix_floor
        passed = answers.count(200)
        # Each process exchanges the range once it alone sees half the limit; the other's
        # last send before its own exchange is the one it cannot see: at most one past the
        # floor (each process alone would have let its own ten through: twenty).
        assert floor <= passed <= floor + 1
        assert answers == [200] * passed + [800] * (30 - passed)
        assert await _count(first, verifications) == passed
        # the refused sends were given back: the store counts the numbers that went out
        await first.fraud.sync()
        await second.fraud.sync()
        counted = sa.select(sa.func.sum(fraud_counters.c.count)).where(
            fraud_counters.c.account_id == account.id, fraud_counters.c.name == "p:+919876500"
        )
        async with first.database.read() as connection:
            assert await connection.scalar(counted) == passed
    finally:
        await second.stop()
        await first.stop()


async def test_a_client_ip_seen_by_another_process_is_refused_at_its_second_send_here(
    make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    settings = make_settings(fraud={"sync_interval_s": 60})
    first, second = (build_container(settings, clock=clock) for _ in range(2))
    await first.start(run_workers=False)
    await second.start(run_workers=False)
    try:
        account = await first.accounts.create_customer(
            email="dev@example.com", password=PASSWORD, customer_id="C-1", name="Acme"
        )

        async def send(process: Container, i: int) -> str:
            try:
                await process.verification.start(account, _otp_to(NORMAL[i], "198.51.100.7"))
            except FraudBlockedError as refused:
                return str(refused).split(":")[0]
            return "sent"

        limit = first.fraud.limits.ip_limit
        assert [await send(first, i) for i in range(limit)] == ["sent"] * limit
        await first.fraud.sync()  # the other process's counts are in the store
        # the address's first send here is judged on this process's counts (it goes through);
        # before its second, its history is read: every process's sends, refused
        assert await send(second, limit) == "sent"
        assert await send(second, limit + 1) == "blocked by fraud guard (client_ip)"
    finally:
        await second.stop()
        await first.stop()


async def test_an_address_seen_once_keeps_its_count_in_the_process_until_it_comes_back(
    make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """Most addresses come once: their counts are not written at each sync (a row each would
    be most of a sync's writes); at the address's second send here both sends are written."""
    process = build_container(make_settings(fraud={"sync_interval_s": 60}), clock=clock)
    await process.start(run_workers=False)
    try:
        account = await process.accounts.create_customer(
            email="dev@example.com", password=PASSWORD, customer_id="C-1", name="Acme"
        )

        async def send(i: int, address: str) -> None:
            await process.verification.start(account, _otp_to(NORMAL[i], address))

        async def stored(address: str) -> int | None:
            async with process.database.read() as connection:
                total = await connection.scalar(
                    sa.select(sa.func.sum(fraud_counters.c.count)).where(
                        fraud_counters.c.account_id == account.id,
                        fraud_counters.c.name == f"ip:{address}",
                    )
                )
            return None if total is None else int(total)

        await send(0, "198.51.100.7")
        await send(1, "198.51.100.8")
        await process.fraud.sync()
        assert await stored("198.51.100.7") is None
        assert await stored("198.51.100.8") is None
        await send(2, "198.51.100.7")
        await process.fraud.sync()
        assert await stored("198.51.100.7") == 2
        assert await stored("198.51.100.8") is None
        # the range and the account's counts are written at every sync all the same
        async with process.database.read() as connection:
            sends = await connection.scalar(
                sa.select(sa.func.sum(fraud_counters.c.count)).where(
                    fraud_counters.c.account_id == account.id, fraud_counters.c.name == "a"
                )
            )
        assert sends == 3
    finally:
        await process.stop()


class _CountingReads:
    """The guard's counter store, its reads counted (what the guard read back, and when)."""

    def __init__(self, store: CounterStore) -> None:
        self.store = store
        self.reads: list[tuple[str, ...]] = []

    async def add(self, increments: Mapping[Bucket, int]) -> dict[Bucket, int]:
        return await self.store.add(increments)

    async def read(
        self, account_id: str, names: Sequence[str], since_minute: int
    ) -> dict[str, dict[int, int]]:
        self.reads.append(tuple(names))
        return await self.store.read(account_id, names, since_minute)

    async def prune(self, before_minute: int) -> None:
        await self.store.prune(before_minute)

    async def close(self) -> None:
        await self.store.close()


def _count_reads(process: Container) -> _CountingReads:
    counting = _CountingReads(process.fraud._counters)
    process.fraud._counters = counting  # a test's liberty: the container wires the store
    return counting


async def test_a_process_alone_reads_nothing_back_and_sees_another_once_it_writes(
    make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """The store's write count of an account tells a process whether anyone else wrote for
    it: alone, a sync writes and reads nothing back; the first write of a second process
    makes the first read the counters it uses, so the second's numbers count against the
    range before the first's next send is judged."""
    settings = make_settings(fraud={"sync_interval_s": 0})  # a sync before every send
    first, second = (build_container(settings, clock=clock) for _ in range(2))
    await first.start(run_workers=False)
    await second.start(run_workers=False)
    try:
        account = await first.accounts.create_customer(
            email="dev@example.com", password=PASSWORD, customer_id="C-1", name="Acme"
        )
        reads = _count_reads(first)
        for i in range(6):
            clock.advance(20)  # a minute's first sync among them
            await first.verification.start(account, _otp_to(ATTACK_RANGE + i))
        # the counters' history at their first send, the ones used at the first sync (the
        # account's write count was new to the process), then nothing
        assert reads.reads[0] == ("a", "av", "c:91", "cv:91", "p:+919876500", "pv:+919876500")
        assert len(reads.reads) == 2
        await first.fraud.sync()
        assert len(reads.reads) == 2
        for i in range(6, 10):  # the other process: the floor's ten numbers reached
            clock.advance(1)
            await second.verification.start(account, _otp_to(ATTACK_RANGE + i))
        clock.advance(1)
        with pytest.raises(FraudBlockedError, match="prefix_velocity"):
            await first.verification.start(account, _otp_to(ATTACK_RANGE + 10))
        assert "p:+919876500" in {name for names in reads.reads[2:] for name in names}
        assert await _count(first, verifications) == 10
    finally:
        await second.stop()
        await first.stop()


async def test_pruning_keeps_the_accounts_write_counts(container: Container) -> None:
    counters = container.fraud._counters
    totals = await counters.add({("acc", WRITES, WRITES_MINUTE): 3, ("acc", "a", 100): 1})
    assert totals[("acc", WRITES, WRITES_MINUTE)] == 3
    await counters.prune(1_000_000)
    assert await counters.read("acc", ["a"], 0) == {}
    again = await counters.add({("acc", WRITES, WRITES_MINUTE): 1})
    assert again == {("acc", WRITES, WRITES_MINUTE): 4}


async def test_an_accounts_write_count_grows_past_a_32_bit_integer(container: Container) -> None:
    """The write count is never pruned: years of syncs must not make the upsert fail."""
    counters = container.fraud._counters
    await counters.add({("acc", WRITES, WRITES_MINUTE): 2**31 - 1})
    again = await counters.add({("acc", WRITES, WRITES_MINUTE): 2})
    assert again == {("acc", WRITES, WRITES_MINUTE): 2**31 + 1}
