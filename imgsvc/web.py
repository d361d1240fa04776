"""Endpoints for people and operators: live progress, the zip, metrics, API docs, the page.

They sit beside the core endpoints of routes.py and reuse its helpers; app.py serves both
tables, this one last because the page is mounted at `/` and would shadow what follows.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from . import archive, events, metrics, openapi
from .routes import finished_results, job_of, services_of

STATIC_DIR = Path(__file__).resolve().parent / "static"
NO_STORE = {"Cache-Control": "no-store"}


async def progress(request: Request) -> Response:
    job = await job_of(request)
    stream = events.progress_events(services_of(request).db, job.id)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        # Proxies (nginx) must pass each event on as it comes, not buffer the stream.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def zip_archive(request: Request) -> Response:
    job = await job_of(request)
    finished_results(request, job, "the archive")
    services = services_of(request)
    return StreamingResponse(
        archive.zip_stream(services.db, services.storage, job.id),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{archive.archive_name(job.id)}"'},
    )


async def prometheus(request: Request) -> Response:
    services = services_of(request)
    body, content_type = metrics.exposition(
        await services.db.jobs_by_state(), services.runner.queue_depth
    )
    return Response(body, headers={"Content-Type": content_type, **NO_STORE})


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi.document())


async def docs(request: Request) -> Response:
    return HTMLResponse(openapi.DOCS_PAGE)


async def docs_init(request: Request) -> Response:
    return Response(openapi.DOCS_INIT, media_type="text/javascript")


ROUTES = [
    Route("/api/events/{request_id}", progress),
    Route("/api/archive/{request_id}", zip_archive),
    Route("/metrics", prometheus),
    Route("/openapi.json", openapi_json),
    Route("/docs", docs),
    Route("/docs/init.js", docs_init),
    Mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui"),
    Mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="page"),
]
