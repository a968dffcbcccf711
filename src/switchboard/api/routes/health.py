"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from switchboard.api.dependencies import container_of

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database answers")
async def readyz(request: Request) -> JSONResponse:
    container = container_of(request)
    database_ok = await container.database.ping()
    body = {"status": "ok" if database_ok else "unavailable", "database": database_ok}
    return JSONResponse(body, status_code=200 if database_ok else 503)
