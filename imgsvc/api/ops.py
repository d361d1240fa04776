"""Endpoints for operators and tools: liveness, readiness, metrics, the API's documents."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from .. import metrics
from ..lifecycle import Phase
from . import openapi
from .services import services_of

NO_STORE = {"Cache-Control": "no-store"}


async def livez(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    services = services_of(request)
    checks: dict[str, Any] = {}
    try:
        await services.db.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"failing: {exc}"
    checks["storage"] = "ok" if await services.storage.ready() else "not writable"
    checks["workers"] = "ok" if services.runner.alive else "not running"
    phase = services.lifecycle.phase
    checks["service"] = "ok" if phase is Phase.READY else phase.value
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        200 if ready else 503)  # fmt: skip


async def prometheus(request: Request) -> Response:
    services = services_of(request)
    body, content_type = metrics.exposition(
        await services.db.jobs_by_state(), await services.db.waiting_jobs()
    )
    return Response(body, headers={"Content-Type": content_type, **NO_STORE})


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi.document(request.app.routes))


async def docs(request: Request) -> Response:
    return HTMLResponse(openapi.DOCS_PAGE)


async def docs_init(request: Request) -> Response:
    return Response(openapi.DOCS_INIT, media_type="text/javascript")
