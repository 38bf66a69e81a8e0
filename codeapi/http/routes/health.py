"""Liveness (cheap, open, names the backends) and a detailed check of every dependency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from codeapi import __version__
from codeapi.errors import CodeapiError
from codeapi.http.deps import Services, require_api_key
from codeapi.languages.inventory import toolbox_inventory

router = APIRouter()


@router.get("/health")
async def health(services: Services) -> dict[str, Any]:
    """Liveness: the process answers (open, cheap, names the backends)."""
    return {"status": "healthy", "version": __version__, "backends": services.backends}


@router.get("/health/ready")
async def ready(services: Services) -> JSONResponse:
    """Readiness, for a load balancer: 503 "starting" while Python's warm path is coming up (a Python
    run would wait for it), so that calls go to a replica that is ready; open like /health."""
    warm = services.executions.warm
    is_ready = warm is None or warm.pool.ready
    return JSONResponse({"status": "ready" if is_ready else "starting"}, status_code=200 if is_ready else 503)


async def probe(check: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        await check()
    except CodeapiError as error:
        return {"status": "unhealthy", "error": error.message, "latency_ms": elapsed_ms(started)}
    return {"status": "healthy", "latency_ms": elapsed_ms(started)}


def elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


@router.get("/health/detailed", dependencies=[Depends(require_api_key)])
async def health_detailed(services: Services) -> JSONResponse:
    """503 when any dependency fails, so a monitor can act on the status alone; 200 but "starting"
    while Python's warm path comes up, "degraded" while a background loop keeps failing."""
    warm = services.executions.warm
    checks = {
        "metadata": {"backend": services.backends["metadata"], **await probe(services.sessions.metadata.ping)},
        "files": {"backend": services.backends["files"], **await probe(services.sessions.blobs.ping)},
        "sandbox": await probe(services.check_sandbox),
        "python": warm.pool.health()
        if warm is not None
        else {"status": "healthy", "mode": "one-shot (REPL_ENABLED=false)"},
        "background_loops": services.loops.health(),
        "egress_proxy": services.egress.health()
        if services.egress is not None
        else {"status": "healthy", "mode": "off (ENABLE_SANDBOX_NETWORK=false)"},
    }
    statuses = {check["status"] for check in checks.values()}
    overall = next((status for status in ("unhealthy", "starting", "degraded") if status in statuses), "healthy")
    body = {"status": overall, "version": __version__, "checks": checks}
    return JSONResponse(body, status_code=503 if overall == "unhealthy" else 200)


@router.get("/metrics", dependencies=[Depends(require_api_key)], include_in_schema=False)
async def metrics() -> Response:
    """Prometheus text format; scrapers authenticate like any client (Basic auth with the key works)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/health/toolbox", dependencies=[Depends(require_api_key)])
async def health_toolbox(services: Services) -> dict[str, Any]:
    """Each language's version and what sandboxed programs find installed (docs/toolbox.md)."""
    return await asyncio.to_thread(toolbox_inventory, services.executions.programs.runtime_dir)
