"""Request-scoped dependencies: the container, the authenticated account, merged parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Request

from switchboard import tenancy
from switchboard.api.params import Params, read_params
from switchboard.domain.accounts import Account

if TYPE_CHECKING:
    from switchboard.bootstrap import Container


def container_of(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def get_container(request: Request) -> Container:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
    return container_of(request)


async def get_account(
    request: Request,
    auth_token: Annotated[str | None, Header(alias="authToken")] = None,
) -> Account:
    container = container_of(request)
    account = await container.tokens.authenticate(auth_token)
    tenancy.enter(account.id)  # the rest of the request sees this account's rows only
    return account


async def get_params(request: Request) -> Params:
    container = container_of(request)
    return await read_params(
        request,
        max_body_bytes=container.settings.api.max_body_bytes,
        max_upload_bytes=container.settings.messaging.max_upload_bytes,
    )


ContainerDep = Annotated["Container", Depends(get_container)]
AccountDep = Annotated[Account, Depends(get_account)]
ParamsDep = Annotated[Params, Depends(get_params)]
