"""Our own OpenAPI document, fuzzed by schemathesis against a real server with two customers:
no 500s, no answer outside its schema, and no customer ever reads another's data."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance
from tests.conftest import TEST_KEY, TEST_PEPPER
from tests.integration.test_crash_recovery import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PASSWORD = "schema test password"
# Paths whose side effects would end the run (revoking our own tokens) or wait on the network.
_SKIP = re.compile(r"^/(metrics|docs|redoc|openapi\.json)")


@dataclass
class Tenant:
    customer_id: str
    token: str
    verification_id: str
    campaign_id: str
    message_id: str
    number: str


@dataclass
class Server:
    url: str
    a: Tenant
    b: Tenant


def _token(http: httpx.Client, customer_id: str) -> str:
    key = base64.b64encode(PASSWORD.encode()).decode()
    body = http.get(
        "/auth/v1/authentication/token", params={"customerId": customer_id, "key": key}
    ).json()
    return str(body["token"])


def _seed(http: httpx.Client, customer_id: str, number: str) -> Tenant:
    token = _token(http, customer_id)
    headers = {"authToken": token}
    otp = http.post(
        "/verification/v3/send",
        params={"countryCode": "91", "mobileNumber": number, "flowType": "SMS"},
        headers=headers,
    ).json()["data"]
    campaign = http.post(
        "/verification/v3/send",
        data={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN",
              "messageType": "TRANSACTIONAL", "message": f"hello from {customer_id}",
              "phoneNumbers": f"91 {number}, 91 {int(number) + 1}"},
        headers=headers,
    ).json()["data"]  # fmt: skip
    single = http.post(
        "/verification/v3/send",
        data={"type": "SMS", "flowType": "SMS", "senderId": "ACMEIN", "countryCode": "91",
              "mobileNumber": str(int(number) + 2), "message": f"single {customer_id}",
              "messageType": "TRANSACTIONAL"},
        headers=headers,
    ).json()["data"]  # fmt: skip
    http.put(
        "/api/v1/callbacks",
        json={"url": f"https://{customer_id.lower()}.example.com/hook"},
        headers=headers,
    )
    return Tenant(
        customer_id=customer_id,
        token=token,
        verification_id=str(otp["verificationId"]),
        campaign_id=str(campaign["campaignId"]),
        message_id=str(single["messageId"]),
        number=number,
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("schema")
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp / 'switchboard.db'}"
    else:
        from tests.conftest import _truncate

        database_url = request.getfixturevalue("postgres_url")
        _truncate(database_url)
    port = free_port()
    config = tmp / "switchboard.toml"
    config.write_text(
        f'database_url = "{database_url}"\n'
        f'token_signing_key = "{TEST_KEY}"\notp_pepper = "{TEST_PEPPER}"\n'
        f"[server]\nport = {port}\nshutdown_grace_s = 1\naccess_log = false\n"
        '[logging]\nlevel = "ERROR"\n'
        "[webhooks]\nrequire_https = true\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SWITCHBOARD_CONFIG"}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "switchboard", *args, "--config", str(config)],
            env=env, capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        return done.stdout.decode()

    cli("db", "upgrade")
    for customer in ("C-TENANT-A", "C-TENANT-B"):
        cli("customers", "create", "--email", f"{customer.lower()}@example.com",
            "--password", PASSWORD, "--customer-id", customer)  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "switchboard", "serve", "--config", str(config)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("server did not start")
                time.sleep(0.1)
            a = _seed(http, "C-TENANT-A", "9812300000")
            b = _seed(http, "C-TENANT-B", "9812399990")
        yield Server(url=url, a=a, b=b)
    finally:
        process.terminate()
        process.wait(20)


def _tenant_b_secrets(server: Server) -> list[str]:
    b = server.b
    return [b.customer_id, b.verification_id, b.campaign_id, b.message_id, b.number,
            "c-tenant-b.example.com"]  # fmt: skip


def _exercise(operation: Any, url: str, tenant: Tenant, leaked: list[str]) -> Callable[[], None]:
    """A hypothesis test of one operation: generated requests with the tenant's token."""

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy())
    def exercise(case: schemathesis.Case[Any]) -> None:
        response = case.call_and_validate(
            base_url=url,
            headers={"authToken": tenant.token},
            checks=[not_a_server_error, response_schema_conformance],
            timeout=30,
        )
        assert "Traceback" not in response.text
        for secret in leaked:
            assert secret not in response.text, f"showed tenant B's {secret}"

    return cast(Callable[[], None], exercise)


def test_every_operation_answers_within_its_schema_and_never_with_a_500(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json").exclude(
        path_regex=_SKIP.pattern
    )
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations += 1
        # Deleting and rotating act on tenant B (their effects would end A's later checks);
        # every other call is A's, and must never show B's data.
        as_b = operation.method.upper() == "DELETE" or operation.path.endswith("rotate-secret")
        tenant = server.b if as_b else server.a
        leaked = [] if as_b else _tenant_b_secrets(server)

        exercise = _exercise(operation, server.url, tenant, leaked)
        try:
            exercise()
        except (Exception, BaseExceptionGroup) as failure:  # report every operation's failure
            failures.append(f"{operation.label}: {type(failure).__name__}: {failure}"[:1500])
    assert operations >= 20
    assert failures == []


def test_another_customers_ids_read_as_not_found(server: Server) -> None:
    """A's token with B's ids gets exactly the answer an id that exists nowhere gets."""
    a, b = server.a, server.b
    document = httpx.get(f"{server.url}/openapi.json").json()
    real = {
        "verification_id": b.verification_id,
        "campaign_id": b.campaign_id,
        "message_id": b.message_id,
    }
    unknown = {
        "verification_id": str(int(b.verification_id) ^ 0x5A5A5A),
        "campaign_id": str(uuid.uuid4()),
        "message_id": str(uuid.uuid4()),
    }
    tried = 0
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for path, operations in document["paths"].items():
            names = re.findall(r"{(\w+)}", path)
            if not names or not all(n in real for n in names) or "get" not in operations:
                continue
            mine = http.get(path.format(**real), headers={"authToken": b.token})
            theirs = http.get(path.format(**real), headers={"authToken": a.token})
            missing = http.get(path.format(**unknown), headers={"authToken": a.token})
            assert mine.status_code == 200, (path, mine.text)
            assert theirs.status_code == missing.status_code, (path, theirs.text)
            assert theirs.status_code in (400, 404), (path, theirs.text)
            masked = theirs.text
            for name in names:
                masked = masked.replace(real[name], unknown[name])
            assert masked == missing.text, path
            tried += 1
    assert tried >= 4  # verifications, messages, campaigns and their report at least
