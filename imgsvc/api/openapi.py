"""The OpenAPI 3 document of the HTTP API, and Swagger UI served from the installed package.

Each operation is written by hand, keyed by its route's name: Starlette has no models to
derive it from, and a test runs schemathesis against the live service, so the document
cannot drift from what the service answers. Paths and methods come from the route table.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, Route

from .. import paths
from ..models import OutputFormat
from .auth import needs_key
from .jobs import DETAILS_PAGE, JOBS_PAGE, MAX_JOBS_PAGE
from .openapi_schemas import SCHEMAS, ref
from .upload_form import MAX_DIMENSION, MAX_QUALITY, MAX_SIZES, NO, YES

JSON = "application/json"
ID_PARAM = {"name": "request_id", "in": "path", "required": True,
            "description": "the request id the upload answered with",
            "schema": {"type": "string"}}  # fmt: skip


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref(schema)}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, "Error")


def _paged(default: int, maximum: int) -> list[dict[str, Any]]:
    return [
        {"name": "offset", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0, "default": 0}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}},
    ]  # fmt: skip


UPLOAD_FIELDS: dict[str, Any] = {
    "webhook_url": {"type": "string", "description": "called once the job has ended"},
    "quality": {"type": "integer", "minimum": 1, "maximum": MAX_QUALITY, "default": 50},
    "max_dimension": {"type": "integer", "minimum": 1, "maximum": MAX_DIMENSION,
                      "description": "longest side of the output, in pixels"},
    "format": {"type": "string", "enum": [*OutputFormat, "jpg"], "default": OutputFormat.JPEG},
    "progressive": {"type": "string", "enum": [*YES, *NO], "default": "false",
                    "description": "JPEG only: progressive JPEG, a blurred whole image first "
                                   "that sharpens as it loads"},
    "sizes": {"type": "string", "example": "1600,800,300",
              "description": f"up to {MAX_SIZES} longest sides in pixels (1 to {MAX_DIMENSION}, "
                             "each once), comma-separated: each image also gets one output "
                             "per size, never enlarged, in the results CSV's columns "
                             "`Output Image Urls <size>`"},
    "reuse": {"type": "string", "enum": [*YES, *NO], "default": "true",
              "description": "reuse the output of an earlier job of the same API key (same "
                             "URL and options) when the host says the image has not changed "
                             "(a conditional request) or sends the same bytes; false makes "
                             "every image again"},
}  # fmt: skip


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "1 to 255 printable ASCII characters. The same key with the same upload "
                   "answers 200 with the first answer (`Idempotent-Replayed: true`) instead "
                   "of making a second job; with another upload, 409 "
                   "`idempotency_key_reused`. With API keys on, each API key has its own "
                   "Idempotency-Keys.",
}  # fmt: skip
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
SHUTTING_DOWN = {**_error("`shutting_down`: the service is stopping and takes no new work"),
                 "headers": RETRY_AFTER}  # fmt: skip
LOCATION = {"Location": {"schema": {"type": "string"}, "description": "the status URL"}}


def _upload() -> dict[str, Any]:
    form = {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}, **UPLOAD_FIELDS},
    }
    query = [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in UPLOAD_FIELDS.items()
    ]
    replayed = {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}}
    return {
        "summary": "Upload a CSV of products and image URLs; the job starts at once",
        "description": "Send a multipart form with `file`, or a `text/csv` body with the "
                       "options as query parameters (used only with a `text/csv` body).",
        "parameters": [*query, IDEMPOTENCY_KEY],
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": form},
            "text/csv": {"schema": {"type": "string"}}}},
        "responses": {
            "200": {**_json("an upload repeated with its Idempotency-Key: the first answer",
                            "UploadAnswer"), "headers": {**LOCATION, **replayed}},
            "202": {**_json("accepted and committed; the job runs", "UploadAnswer"),
                    "headers": LOCATION},
            "400": _error("the CSV or an option is invalid (`errors` lists CSV problems), "
                          "or `invalid_idempotency_key`"),
            "409": _error("`idempotency_key_reused`: the key was used for another upload"),
            "413": _error("the upload is larger than IMGSVC_MAX_UPLOAD_BYTES"),
            "415": _error("neither multipart/form-data nor a CSV body"),
            "503": SHUTTING_DOWN,
        },
    }  # fmt: skip


def _control() -> dict[str, Any]:
    """Cancel, retry and redeliver: the POSTs that steer a job after its upload."""
    cancel = _by_id(
        "Stop a pending or processing job; its unfinished images end as `cancelled`",
        _json("the job, cancelled", "Status"),
        ("409", "`already_ended`: only a pending or processing job can be cancelled"),
    )
    retry = _by_id(
        "Put an ended job's failed images back in the queue",
        {**_json("queued again; `retried_images` counts them", "Retried"), "headers": LOCATION},
        ("409", "`not_finished` (the job still runs) or `nothing_to_retry`"),
        status="202",
    )
    retry["responses"]["503"] = SHUTTING_DOWN
    redeliver = _by_id(
        "Send the job's webhook again (the same `webhook-id`, a fresh round of retries)",
        _json("queued for delivery", "Webhook"),
        ("409", "`no_webhook` (no webhook_url) or `not_finished` (sent when the job ends)"),
        status="202",
    )
    return {"cancel": cancel, "retry": retry, "redeliver": redeliver}


def _by_id(
    summary: str, ok: dict[str, Any], *extra: tuple[str, str], status: str = "200"
) -> dict[str, Any]:
    responses = {status: ok, "404": _error("no job has this request id")}
    responses.update({code: _error(text) for code, text in extra})
    return {"summary": summary, "parameters": [ID_PARAM], "responses": responses}


def _file(description: str, media: str) -> dict[str, Any]:
    return {"description": description,
            "content": {media: {"schema": {"type": "string", "format": "binary"}}}}  # fmt: skip


SSE_EVENT = {
    "type": "object", "required": ["data"],
    "description": "one event; `data` is JSON: the status object (`done` adds the links)",
    "properties": {"event": {"type": "string", "enum": ["progress", "done", "error"]},
                   "data": {"type": "string"}},
}  # fmt: skip
NOT_FINISHED = ("409", "the job has not ended yet")


def operations() -> dict[str, dict[str, Any]]:
    """Every operation of the API by its route's name: its parameters and each answer it
    can give."""
    details = _by_id(
        "Status, options and a page of products with every image's outcome",
        _json("the details", "Details"),
        ("400", "offset or limit out of range"),
    )
    details["parameters"] = [ID_PARAM, *_paged(DETAILS_PAGE, DETAILS_PAGE)]
    image = {
        "summary": "One output image (immutable; ETag and If-None-Match supported)",
        "parameters": [
            {"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {
            "200": {
                "description": "the image",
                "content": {
                    f.content_type: {"schema": {"type": "string", "format": "binary"}}
                    for f in OutputFormat
                },
            },
            "304": {"description": "not modified"},
            "404": _error("no such image"),
        },
    }
    return {
        "upload": _upload(),
        "status": _by_id("Status and progress of a job", _json("the status", "Status")),
        "details": details,
        "events": {**_by_id(
            "Live progress as server-sent events",
            {"description": "an event stream", "content": {"text/event-stream": {
                "schema": SSE_EVENT}}}),
            "description": "`progress` events carry the status object whenever it changes; "
                           "one `done` event (the status object and the result links) ends "
                           "the stream. Try `curl -N`."},
        "download": _by_id(
            "The results CSV", _file("the results CSV", "text/csv"), NOT_FINISHED),
        "archive": _by_id(
            "A zip of the results CSV and every output image",
            _file("the zip, streamed", "application/zip"), NOT_FINISHED),
        "image": image,
        "jobs": {"summary": "Recent jobs, newest first",
                 "parameters": _paged(JOBS_PAGE, MAX_JOBS_PAGE),
                 "responses": {"200": _json("a page of jobs", "JobList"),
                               "400": _error("offset or limit out of range")}},
        "livez": {"summary": "Liveness", "responses": {"200": {
            "description": "the process answers", "content": {JSON: {"schema": {
                "type": "object", "properties": {"status": {"type": "string"}}}}}}}},
        "readyz": {"summary": "Readiness: database, storage and workers",
                   "responses": {"200": _json("ready", "Readiness"),
                                 "503": _json("not ready", "Readiness")}},
        "metrics": {"summary": "Prometheus metrics", "responses": {"200": {
            "description": "the text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}}}}},
        "openapi": {"summary": "This document", "responses": {"200": {
            "description": "OpenAPI 3.0", "content": {JSON: {"schema": {"type": "object"}}}}}},
        "docs": {"summary": "Swagger UI for this document, served offline",
                 "responses": {"200": {"description": "the page", "content": {
                     "text/html": {"schema": {"type": "string"}}}}}},
        **_control(),
    }  # fmt: skip


def _path_items(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The document's `paths`: each route of the table that belongs in it, at its path,
    under each of its methods (KeyError for a route no operation describes)."""
    described = operations()
    items: dict[str, Any] = {}
    for route in routes:
        if isinstance(route, Route) and route.include_in_schema:
            # Starlette adds HEAD to every GET route: the GET without a body.
            methods = sorted(m.lower() for m in route.methods or () if m != "HEAD")
            items[route.path] = dict.fromkeys(methods, described[route.name])
    return items


BEARER = {
    "type": "http", "scheme": "bearer",
    "description": "Applies only when the service is started with IMGSVC_API_KEYS set: then "
                   "every /api/* route except /api/image needs `Authorization: Bearer KEY` "
                   "(else 401), and each key sees only the jobs it created (another key's "
                   "job is 404). Without IMGSVC_API_KEYS the API is open.",
}  # fmt: skip
UNAUTHORIZED = {
    **_error("`unauthorized`: IMGSVC_API_KEYS is set and no valid key was sent"),
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
}


def _with_security(all_paths: dict[str, Any]) -> dict[str, Any]:
    """Mark each operation as open, or as guarded by the optional key (with its 401)."""
    for path, item in all_paths.items():
        for operation in item.values():
            if needs_key(path):
                operation["security"] = [{}, {"bearerAuth": []}]  # {}: keys may be off
                operation["responses"]["401"] = UNAUTHORIZED
            else:
                operation["security"] = []
    return all_paths


def document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the service serving `routes` (3.0 so that the bundled
    Swagger UI renders it)."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "imgsvc", "version": version(),
                 "description": "Turn a CSV of products and image URLs into compressed "
                                "images and a results CSV."},
        "paths": _with_security(_path_items(routes)),
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearerAuth": BEARER}},
    }  # fmt: skip


def version() -> str:
    try:
        return importlib.metadata.version("imgsvc")
    except importlib.metadata.PackageNotFoundError:
        return "0"


DOCS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imgsvc API</title><link rel="stylesheet" href="{paths.DOCS_ASSETS}/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="{paths.DOCS_ASSETS}/swagger-ui-bundle.js"></script>
<script src="{paths.DOCS_INIT}"></script></body></html>
"""

DOCS_INIT = f"""window.ui = SwaggerUIBundle({{url: "{paths.OPENAPI}", dom_id: "#swagger-ui",
  deepLinking: true, presets: [SwaggerUIBundle.presets.apis]}});
"""
