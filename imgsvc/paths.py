"""Where each endpoint of the HTTP API lives: every path written once, here.

The service's route table (imgsvc/api/routes.py) mounts its endpoints at these paths and
the OpenAPI document takes its paths from that table; the links in answers, results CSVs
and webhooks fill in the same templates. So does the command-line client: it talks to a
service over HTTP, maybe another machine's, and must start fast, so it reads this table of
plain strings rather than importing the Starlette app (and Pillow, aiosqlite, ...) to ask
its router.
"""

from __future__ import annotations

from urllib.parse import quote

UPLOAD = "/api/upload"
STATUS = "/api/status/{request_id}"
DETAILS = "/api/details/{request_id}"
DOWNLOAD = "/api/download/{request_id}"
EVENTS = "/api/events/{request_id}"
ARCHIVE = "/api/archive/{request_id}"
IMAGE = "/api/image/{filename}"
JOBS = "/api/jobs"
CANCEL = "/api/cancel/{request_id}"
RETRY = "/api/retry/{request_id}"
REDELIVER = "/api/webhook/{request_id}/redeliver"
LIVEZ = "/livez"
READYZ = "/readyz"
METRICS = "/metrics"
OPENAPI = "/openapi.json"
DOCS = "/docs"
DOCS_INIT = "/docs/init.js"
DOCS_ASSETS = "/docs/assets"


def fill(template: str, **params: str) -> str:
    """`template` with each `{name}` replaced by its value, quoted as one path segment."""
    return template.format_map({name: quote(value, safe="") for name, value in params.items()})
