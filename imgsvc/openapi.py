"""The OpenAPI 3 document of the HTTP API, and Swagger UI served from the installed package.

Written by hand next to the endpoints rather than derived from them: Starlette has no
models to derive it from, and a test runs schemathesis against the live service, so the
document cannot drift from what the service answers.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

JSON = "application/json"
ID_PARAM = {"name": "request_id", "in": "path", "required": True,
            "description": "the request id the upload answered with",
            "schema": {"type": "string"}}  # fmt: skip


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema)}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, "Error")


def _paged(default: int, maximum: int) -> list[dict[str, Any]]:
    return [
        {"name": "offset", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0, "default": 0}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}},
    ]  # fmt: skip


def _nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": kind, "nullable": True, **more}


UPLOAD_FIELDS: dict[str, Any] = {
    "webhook_url": {"type": "string", "description": "called once the job has ended"},
    "quality": {"type": "integer", "minimum": 1, "maximum": 95, "default": 50},
    "max_dimension": {"type": "integer", "minimum": 1, "maximum": 20000,
                      "description": "longest side of the output, in pixels"},
    "format": {"type": "string", "enum": ["jpeg", "jpg", "webp"], "default": "jpeg"},
}  # fmt: skip

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["detail", "code"],
        "properties": {
            "detail": {"type": "string", "description": "what went wrong, for a person"},
            "code": {"type": "string", "description": "what went wrong, for a program"},
            "errors": {"type": "array", "items": _ref("Problem"),
                       "description": "every problem found (CSV validation), up to 100"},
        },
    },
    "Problem": {
        "type": "object", "required": ["message"],
        "description": "`line` (the header is line 1) and `column` are left out when unknown",
        "properties": {"line": {"type": "integer"}, "column": {"type": "string"},
                       "message": {"type": "string"}},
    },
    "JobState": {"type": "string",
                 "enum": ["pending", "processing", "completed", "failed", "cancelled"]},
    "Progress": {
        "type": "object",
        "required": ["total_products", "processed_products", "total_images",
                     "processed_images", "succeeded_images", "failed_images", "percentage"],
        "properties": {
            **{name: {"type": "integer", "minimum": 0} for name in (
                "total_products", "processed_products", "total_images", "processed_images",
                "succeeded_images", "failed_images")},
            "percentage": {"type": "number", "minimum": 0, "maximum": 100},
        },
    },
    "Status": {
        "type": "object",
        "required": ["request_id", "status", "message", "progress", "created_at",
                     "updated_at", "completed_at"],
        "properties": {
            "request_id": {"type": "string"}, "status": _ref("JobState"),
            "message": {"type": "string"}, "progress": _ref("Progress"),
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "completed_at": _nullable("string", format="date-time"),
        },
    },
    "Links": {
        "type": "object",
        "required": ["status_url", "details_url", "download_url", "events_url"],
        "properties": {name: {"type": "string", "format": "uri"} for name in (
            "status_url", "details_url", "download_url", "events_url")},
    },
    "UploadAnswer": {
        "allOf": [_ref("Links"), {
            "type": "object",
            "required": ["request_id", "status", "message", "total_products", "total_images",
                         "webhook_url"],
            "properties": {
                "request_id": {"type": "string"}, "status": _ref("JobState"),
                "message": {"type": "string"},
                "total_products": {"type": "integer"}, "total_images": {"type": "integer"},
                "webhook_url": _nullable("string"),
            },
        }],
    },
    "Image": {
        "type": "object",
        "required": ["input_url", "output_url", "status", "error", "bytes_in", "bytes_out",
                     "width", "height"],
        "properties": {
            "input_url": {"type": "string"}, "output_url": _nullable("string"),
            "status": {"type": "string", "enum": ["pending", "processing", "succeeded",
                                                  "failed", "cancelled"]},
            "error": {"type": "object", "nullable": True, "required": ["code", "message"],
                      "properties": {"code": {"type": "string"},
                                     "message": {"type": "string"}}},
            **{name: _nullable("integer") for name in ("bytes_in", "bytes_out", "width",
                                                        "height")},
        },
    },
    "Product": {
        "type": "object",
        "required": ["serial_number", "product_name", "line", "input_image_urls",
                     "output_image_urls", "images"],
        "properties": {
            "serial_number": {"type": "string"}, "product_name": {"type": "string"},
            "line": {"type": "integer", "description": "its line in the uploaded CSV"},
            "input_image_urls": {"type": "array", "items": {"type": "string"}},
            "output_image_urls": {"type": "array", "items": _nullable("string")},
            "images": {"type": "array", "items": _ref("Image")},
        },
    },
    "Details": {
        "allOf": [_ref("Status"), {
            "type": "object", "required": ["options", "offset", "limit", "products"],
            "properties": {
                "options": {"type": "object", "properties": {
                    "quality": {"type": "integer"}, "max_dimension": _nullable("integer"),
                    "format": {"type": "string"}}},
                "webhook": {"type": "object", "description": "the webhook and its attempts"},
                "offset": {"type": "integer"}, "limit": {"type": "integer"},
                "products": {"type": "array", "items": _ref("Product")},
            },
        }],
    },
    "JobList": {
        "type": "object", "required": ["offset", "limit", "total", "jobs"],
        "properties": {
            "offset": {"type": "integer"}, "limit": {"type": "integer"},
            "total": {"type": "integer"},
            "jobs": {"type": "array", "items": {"allOf": [_ref("Status"), _ref("Links")]}},
        },
    },
    "Readiness": {
        "type": "object", "required": ["status", "checks"],
        "properties": {"status": {"type": "string", "enum": ["ready", "not ready"]},
                       "checks": {"type": "object",
                                  "additionalProperties": {"type": "string"}}},
    },
}  # fmt: skip


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
    return {
        "summary": "Upload a CSV of products and image URLs; the job starts at once",
        "description": "Send a multipart form with `file`, or a `text/csv` body with the "
                       "options as query parameters (used only with a `text/csv` body).",
        "parameters": [*query, {"name": "Idempotency-Key", "in": "header", "required": False,
                                "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": form},
            "text/csv": {"schema": {"type": "string"}}}},
        "responses": {
            "202": {**_json("accepted and committed; the job runs", "UploadAnswer"),
                    "headers": {"Location": {"schema": {"type": "string"},
                                             "description": "the status URL"}}},
            "400": _error("the CSV or an option is invalid; `errors` lists CSV problems"),
            "413": _error("the upload is larger than IMGSVC_MAX_UPLOAD_BYTES"),
            "415": _error("neither multipart/form-data nor a CSV body"),
        },
    }  # fmt: skip


def _by_id(summary: str, ok: dict[str, Any], *extra: tuple[str, str]) -> dict[str, Any]:
    responses = {"200": ok, "404": _error("no job has this request id")}
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


def paths() -> dict[str, Any]:
    """Every route of the API, its parameters and each answer it can give."""
    details = _by_id(
        "Status, options and a page of products with every image's outcome",
        _json("the details", "Details"),
        ("400", "offset or limit out of range"),
    )
    details["parameters"] = [ID_PARAM, *_paged(1000, 1000)]
    image = {
        "summary": "One output image (immutable; ETag and If-None-Match supported)",
        "parameters": [
            {"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {
            "200": {
                "description": "the image",
                "content": {
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "image/webp": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "304": {"description": "not modified"},
            "404": _error("no such image"),
        },
    }
    return {
        "/api/upload": {"post": _upload()},
        "/api/status/{request_id}": {"get": _by_id("Status and progress of a job",
                                                   _json("the status", "Status"))},
        "/api/details/{request_id}": {"get": details},
        "/api/events/{request_id}": {"get": {**_by_id(
            "Live progress as server-sent events",
            {"description": "an event stream", "content": {"text/event-stream": {
                "schema": SSE_EVENT}}}),
            "description": "`progress` events carry the status object whenever it changes; "
                           "one `done` event (the status object and the result links) ends "
                           "the stream. Try `curl -N`."}},
        "/api/download/{request_id}": {"get": _by_id(
            "The results CSV", _file("the results CSV", "text/csv"), NOT_FINISHED)},
        "/api/archive/{request_id}": {"get": _by_id(
            "A zip of the results CSV and every output image",
            _file("the zip, streamed", "application/zip"), NOT_FINISHED)},
        "/api/image/{filename}": {"get": image},
        "/api/jobs": {"get": {"summary": "Recent jobs, newest first",
                              "parameters": _paged(50, 500),
                              "responses": {"200": _json("a page of jobs", "JobList"),
                                            "400": _error("offset or limit out of range")}}},
        "/livez": {"get": {"summary": "Liveness", "responses": {"200": {
            "description": "the process answers", "content": {JSON: {"schema": {
                "type": "object", "properties": {"status": {"type": "string"}}}}}}}}},
        "/readyz": {"get": {"summary": "Readiness: database, storage and workers",
                            "responses": {"200": _json("ready", "Readiness"),
                                          "503": _json("not ready", "Readiness")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
            "description": "the text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    }  # fmt: skip


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document (3.0 so that the bundled Swagger UI renders it)."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "imgsvc", "version": version(),
                 "description": "Turn a CSV of products and image URLs into compressed "
                                "images and a results CSV."},
        "paths": paths(),
        "components": {"schemas": SCHEMAS},
    }  # fmt: skip


def version() -> str:
    try:
        return importlib.metadata.version("imgsvc")
    except importlib.metadata.PackageNotFoundError:
        return "0"


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imgsvc API</title><link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""

DOCS_INIT = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
  deepLinking: true, presets: [SwaggerUIBundle.presets.apis]});
"""
