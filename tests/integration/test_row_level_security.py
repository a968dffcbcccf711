"""Row-level security on PostgreSQL: the second wall behind every query's account filter.

A customer's request narrows its transactions to its own account (`switchboard.tenancy`), so even
a query that names another account answers nothing and cannot write that account's rows. The
whole suite runs as an ordinary role (tests/conftest.py), so the policies hold in every test;
these tests prove the wall itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from tests.conftest import APP_ROLE, SettingsFactory, _truncate, open_client

from switchboard import tenancy
from switchboard.bootstrap import Container, build_container
from switchboard.storage.sql.engines import SCOPE_SETTING, Database, sync_engine
from switchboard.storage.sql.tables import metadata
from switchboard.storage.sql.verifications import SqlVerificationStore
from switchboard.testing.client import MessageCentralClient

pytestmark = pytest.mark.postgres

PASSWORD = "correct horse battery"


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """PostgreSQL only: SQLite has no row-level security."""
    _truncate(postgres_url)
    return postgres_url


@pytest.fixture
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    async with await open_client(container) as http:
        yield http


async def _customer_with_otp(
    container: Container, client: httpx.AsyncClient, customer_id: str, number: str
) -> int:
    await container.accounts.create_customer(
        email=f"{customer_id.lower()}@example.com", password=PASSWORD, customer_id=customer_id
    )
    api = MessageCentralClient(client, customer_id, PASSWORD)
    await api.fetch_token()
    response = await api.send_otp(mobileNumber=number)
    body = response.json()
    assert body["responseCode"] == 200, body
    return int(body["data"]["verificationId"])


async def _count(container: Container, sql: str) -> int:
    async with container.database.read() as connection:
        return int((await connection.execute(sa.text(sql))).scalar_one())


async def test_every_table_holding_an_accounts_rows_is_under_row_level_security(
    container: Container,
) -> None:
    expected = {"accounts"} | {t.name for t in metadata.sorted_tables if "account_id" in t.c}
    async with container.database.read() as connection:
        rows = await connection.execute(
            sa.text(
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
                "(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r'"
            )
        )
        state = {name: (enabled, forced, policies) for name, enabled, forced, policies in rows}
        superuser = (await connection.execute(sa.text("SHOW is_superuser"))).scalar_one()
    assert superuser == "off"  # a superuser would pass every policy: the tests would prove nothing
    unprotected = sorted(t for t in expected if state.get(t) != (True, True, 1))
    assert unprotected == []


async def test_a_customers_request_cannot_read_another_customers_rows_even_by_naming_them(
    container: Container, client: httpx.AsyncClient
) -> None:
    # A's request is the first of this process: the group-commit writers it starts serve B too
    first = await _customer_with_otp(container, client, "C-RLS-A", "9876500001")
    second = await _customer_with_otp(container, client, "C-RLS-B", "9876500002")
    assert tenancy.current() is None  # the in-process request left no scope behind
    store = SqlVerificationStore(container.database)

    assert await store.get_verification("C-RLS-B", second) is not None  # unscoped: every row
    with tenancy.scoped("C-RLS-A"):
        assert await store.get_verification("C-RLS-A", first) is not None
        # the query names B and B's id, as a query with a wrong filter would: nothing comes back
        assert await store.get_verification("C-RLS-B", second) is None
        assert await _count(container, "SELECT count(*) FROM verifications") == 1
        assert await _count(container, "SELECT count(DISTINCT account_id) FROM messages") == 1
        assert await _count(container, "SELECT count(*) FROM accounts") == 1
        # the platform's default prices stay readable to every account
        defaults = await _count(container, "SELECT count(*) FROM price_rules WHERE account_id = ''")
    assert defaults == await _count(
        container, "SELECT count(*) FROM price_rules WHERE account_id = ''"
    )
    assert await _count(container, "SELECT count(*) FROM verifications") == 2


async def test_a_customers_transaction_cannot_change_or_add_another_customers_rows(
    container: Container, client: httpx.AsyncClient
) -> None:
    await _customer_with_otp(container, client, "C-RLS-A", "9876500001")
    await _customer_with_otp(container, client, "C-RLS-B", "9876500002")
    with tenancy.scoped("C-RLS-A"):
        async with container.database.write() as connection:
            changed = await connection.execute(
                sa.text("UPDATE messages SET body = 'x' WHERE account_id = 'C-RLS-B'")
            )
        assert changed.rowcount == 0
        with pytest.raises(sa.exc.DBAPIError, match="row-level security"):
            async with container.database.write() as connection:
                await connection.execute(
                    sa.text(
                        "INSERT INTO fraud_safe_list (account_id, entry, created_at) "
                        "VALUES ('C-RLS-B', '+919876500009', now())"
                    )
                )
    assert await _count(container, "SELECT count(*) FROM messages WHERE body = 'x'") == 0
    assert await _count(container, "SELECT count(*) FROM fraud_safe_list") == 0


async def test_a_connection_that_names_no_account_sees_no_customer_rows(
    container: Container, client: httpx.AsyncClient, database_url: str
) -> None:
    await _customer_with_otp(container, client, "C-RLS-A", "9876500001")
    assert await _count(container, "SELECT count(*) FROM verifications") == 1
    # another client of the same database as the same role, e.g. a reporting tool
    async with await psycopg.AsyncConnection.connect(database_url) as other:
        cursor = await other.execute("SELECT count(*) FROM verifications")
        assert await cursor.fetchone() == (0,)
        cursor = await other.execute("SELECT count(*) FROM accounts")
        assert await cursor.fetchone() == (0,)


async def test_a_server_connected_as_a_superuser_warns_that_the_wall_is_gone(
    make_settings: SettingsFactory, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    warning = "row-level security does not hold"
    ordinary = build_container(make_settings())
    await ordinary.start(run_workers=False)
    await ordinary.stop()
    assert warning not in capsys.readouterr().out
    superuser_url = database_url.replace(f"//{APP_ROLE}@", "//postgres@", 1)
    superuser = build_container(make_settings(database_url=superuser_url))
    await superuser.start(run_workers=False)
    await superuser.stop()
    assert warning in capsys.readouterr().out


async def test_the_fraud_guards_shared_counters_sync_from_any_customers_request(
    container: Container, client: httpx.AsyncClient
) -> None:
    """The guard keeps every account's counts in the process and syncs them from the send path:
    a sync inside A's request writes B's counts too, which A's scope alone would refuse."""
    await _customer_with_otp(container, client, "C-RLS-A", "9876500001")
    await _customer_with_otp(container, client, "C-RLS-B", "9876500002")
    await asyncio.sleep(2.2)  # past the guard's sync interval: A's next send syncs
    api = MessageCentralClient(client, "C-RLS-A", PASSWORD)
    await api.fetch_token()
    body = (await api.send_otp(mobileNumber="9876500003")).json()
    assert body["responseCode"] == 200, body
    accounts = await _count(container, "SELECT count(DISTINCT account_id) FROM fraud_counters")
    assert accounts == 2


async def test_the_database_urls_own_connection_options_are_kept_beside_the_scope(
    database_url: str,
) -> None:
    """An operator's `?options=-c …` in database_url (a statement timeout, a search path)
    reaches the server with the scope setting, not replaced by it."""
    own = database_url + "?options=-c%20statement_timeout%3D4321"
    database = Database(own)
    try:
        async with database.read(every_account=True) as connection:
            timeout = await connection.scalar(sa.text("SHOW statement_timeout"))
            scope = await connection.scalar(sa.text(f"SELECT current_setting('{SCOPE_SETTING}')"))
    finally:
        await database.dispose()
    assert (timeout, scope) == ("4321ms", "*")
    engine = sync_engine(own)  # Alembic's and the tools' engine
    try:
        with engine.connect() as connection:
            assert connection.scalar(sa.text("SHOW statement_timeout")) == "4321ms"
            assert connection.scalar(sa.text(f"SELECT current_setting('{SCOPE_SETTING}')")) == "*"
    finally:
        engine.dispose()
