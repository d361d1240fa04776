"""Every endpoint, in the order Starlette matches them (the page last: it is mounted at `/`)."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from . import control, jobs, live, ops, upload

STATIC_DIR = Path(__file__).resolve().parent / "static"

ROUTES: list[BaseRoute] = [
    Route("/api/upload", upload.upload, methods=["POST"]),
    Route("/api/status/{request_id}", jobs.status),
    Route("/api/details/{request_id}", jobs.details),
    Route("/api/download/{request_id}", jobs.download),
    Route("/api/image/{filename}", jobs.image),
    Route("/api/jobs", jobs.jobs),
    Route("/api/events/{request_id}", live.progress),
    Route("/api/archive/{request_id}", live.zip_archive),
    Route("/api/cancel/{request_id}", control.cancel, methods=["POST"]),
    Route("/api/retry/{request_id}", control.retry, methods=["POST"]),
    Route("/api/webhook/{request_id}/redeliver", control.redeliver_webhook, methods=["POST"]),
    Route("/livez", ops.livez),
    Route("/readyz", ops.readyz),
    Route("/metrics", ops.prometheus),
    Route("/openapi.json", ops.openapi_json),
    Route("/docs", ops.docs),
    Route("/docs/init.js", ops.docs_init),
    Mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui"),
    Mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="page"),
]
