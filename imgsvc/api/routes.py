"""Every endpoint, by name, in the order Starlette matches them (the page last: it is
mounted at `/`). The paths come from imgsvc/paths.py; the OpenAPI document describes each
route of this table by its name."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from .. import paths
from . import control, jobs, live, ops, upload

STATIC_DIR = Path(__file__).resolve().parent / "static"
POST = ["POST"]

ROUTES: list[BaseRoute] = [
    Route(paths.UPLOAD, upload.upload, methods=POST, name="upload"),
    Route(paths.STATUS, jobs.status, name="status"),
    Route(paths.DETAILS, jobs.details, name="details"),
    Route(paths.DOWNLOAD, jobs.download, name="download"),
    Route(paths.IMAGE, jobs.image, name="image"),
    Route(paths.JOBS, jobs.jobs, name="jobs"),
    Route(paths.EVENTS, live.progress, name="events"),
    Route(paths.ARCHIVE, live.zip_archive, name="archive"),
    Route(paths.CANCEL, control.cancel, methods=POST, name="cancel"),
    Route(paths.RETRY, control.retry, methods=POST, name="retry"),
    Route(paths.REDELIVER, control.redeliver_webhook, methods=POST, name="redeliver"),
    Route(paths.LIVEZ, ops.livez, name="livez"),
    Route(paths.READYZ, ops.readyz, name="readyz"),
    Route(paths.METRICS, ops.prometheus, name="metrics"),
    Route(paths.OPENAPI, ops.openapi_json, name="openapi"),
    Route(paths.DOCS, ops.docs, name="docs"),
    # The page's script and assets are part of /docs, not operations of the API.
    Route(paths.DOCS_INIT, ops.docs_init, name="docs_init", include_in_schema=False),
    Mount(paths.DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs_assets"),
    Mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="page"),
]
