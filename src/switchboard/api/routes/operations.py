"""Operator endpoints: Prometheus `/metrics` and a JSON `/status` of connectors and queue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response

from switchboard.api.dependencies import container_of
from switchboard.channels.base import connector_views

if TYPE_CHECKING:
    from switchboard.bootstrap import Container

router = APIRouter(tags=["operations"])


async def _refresh(container: Container) -> dict[str, int]:
    depth = await container.queue.queue_depth()
    metrics = container.metrics
    metrics.set_queue_depth(depth)
    metrics.binds.clear()  # a state no bind is in any more (a retired bind's) reads 0, not stale
    for view in connector_views(container.drivers):
        metrics.connector_up.labels(view["name"]).set(1 if view["available"] else 0)
        binds = view.get("detail", {}).get("binds", [])
        states: dict[str, int] = {}
        for bind in binds:
            states[str(bind["state"])] = states.get(str(bind["state"]), 0) + 1
        for state, count in states.items():
            metrics.binds.labels(view["name"], state).set(count)
    return depth


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    container = container_of(request)
    await _refresh(container)
    return Response(container.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/status", summary="Connectors, binds and queue depth")
async def status(request: Request) -> dict[str, Any]:
    container = container_of(request)
    depth = await _refresh(container)
    return {
        "queue": depth,
        "workers": container.settings.server.run_workers,
        "connectors": connector_views(container.drivers),
    }
