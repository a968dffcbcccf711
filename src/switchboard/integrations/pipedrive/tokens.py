"""Each company's OAuth tokens: sealed at rest, refreshed before expiry and on 401, single-flight.

Pipedrive rotates the refresh token on every refresh, so two processes refreshing with the same
one would each get a new pair and one of the pairs would be lost. A refresh therefore takes a
lease on the token version in the database (a conditional UPDATE); the holder calls the token
endpoint and stores the new pair only if the version is unchanged (compare-and-swap); the
others wait for the version to move and read the new access token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final, TypeVar

from switchboard.clock import Clock
from switchboard.integrations.pipedrive.client import (
    PipedriveClient,
    PipedriveError,
    PipedriveUnauthorizedError,
    PipedriveUnavailableError,
    TokenAnswer,
)
from switchboard.integrations.pipedrive.store import Company, Grant, PipedriveStore
from switchboard.vault import Vault

T = TypeVar("T")

_EARLY: Final = timedelta(minutes=2)  # refresh this long before the access token expires
_LEASE: Final = timedelta(seconds=30)
_WAIT_POLLS: Final = 300  # × 50 ms: how long a process waits for another one's refresh
_POLL_S: Final = 0.05


class NotInstalledError(PipedriveError):
    pass


def seal_context(company_id: str, kind: str) -> str:
    return f"pipedrive:company:{company_id}:{kind}"


class CompanyTokens:
    def __init__(
        self, store: PipedriveStore, vault: Vault, client: PipedriveClient, clock: Clock
    ) -> None:
        self._store = store
        self._vault = vault
        self._client = client
        self._clock = clock
        self._local: dict[str, asyncio.Lock] = {}

    def grant(self, company_id: str, answer: TokenAnswer) -> Grant:
        """A token answer sealed for this company's row."""
        return Grant(
            access_token=self._vault.seal(
                answer.access_token, seal_context(company_id, "access_token")
            ),
            refresh_token=self._vault.seal(
                answer.refresh_token, seal_context(company_id, "refresh_token")
            ),
            access_expires_at=self._clock.now() + timedelta(seconds=answer.expires_in_s),
            scope=answer.scope,
        )

    def _access(self, company: Company) -> str:
        return self._vault.open(
            company.access_token, seal_context(company.company_id, "access_token")
        )

    async def _company(self, company_id: str) -> Company:
        company = await self._store.get_company(company_id)
        if company is None:
            raise NotInstalledError(f"Pipedrive company {company_id} has not installed the app")
        return company

    async def access_token(self, company_id: str) -> tuple[Company, str]:
        """The company and a live access token (refreshed first when it is about to expire)."""
        company = await self._company(company_id)
        if company.access_expires_at - self._clock.now() > _EARLY:
            return company, self._access(company)
        return await self.refresh(company_id, company.token_version)

    async def refresh(self, company_id: str, seen_version: int) -> tuple[Company, str]:
        """New tokens, unless the version already moved past `seen_version` (then those)."""
        lock = self._local.setdefault(company_id, asyncio.Lock())
        async with lock:  # this process's callers queue here, other processes at the lease
            for _ in range(_WAIT_POLLS):
                company = await self._company(company_id)
                if company.token_version != seen_version:
                    return company, self._access(company)
                now = self._clock.now()
                if await self._store.claim_refresh(company_id, seen_version, now + _LEASE, now):
                    return await self._refresh_claimed(company)
                await asyncio.sleep(_POLL_S)
        raise PipedriveUnavailableError("another process is refreshing the token; try again")

    async def _refresh_claimed(self, company: Company) -> tuple[Company, str]:
        company_id = company.company_id
        try:
            refresh_token = self._vault.open(
                company.refresh_token, seal_context(company_id, "refresh_token")
            )
            answer = await self._client.refresh(refresh_token)
        except BaseException:
            await self._store.release_refresh(company_id, company.token_version)
            raise
        stored = await self._store.store_refresh(
            company_id, company.token_version, self.grant(company_id, answer), self._clock.now()
        )
        # Lost only if the company reinstalled (new tokens) meanwhile: use what is stored.
        current = await self._company(company_id)
        return current, answer.access_token if stored else self._access(current)

    async def call(self, company_id: str, action: Callable[[Company, str], Awaitable[T]]) -> T:
        """Run `action(company, access_token)`; on a 401 refresh once and run it again."""
        company, token = await self.access_token(company_id)
        try:
            return await action(company, token)
        except PipedriveUnauthorizedError:
            company, token = await self.refresh(company_id, company.token_version)
            return await action(company, token)
