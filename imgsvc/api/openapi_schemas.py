"""The schemas of the OpenAPI document: the JSON bodies the API answers with.

Kept apart from the paths (imgsvc/api/openapi.py) so each file stays readable; both are
checked against the live service by schemathesis.
"""

from __future__ import annotations

from typing import Any

from .payloads import LINKS


def ref(name: str) -> dict[str, str]:
    """A reference to one of SCHEMAS."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str, **more: Any) -> dict[str, Any]:
    """A schema of `kind` that may also be null (OpenAPI 3.0 spelling)."""
    return {"type": kind, "nullable": True, **more}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["detail", "code"],
        "properties": {
            "detail": {"type": "string", "description": "what went wrong, for a person"},
            "code": {"type": "string", "description": "what went wrong, for a program"},
            "errors": {"type": "array", "items": ref("Problem"),
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
                     "processed_images", "succeeded_images", "failed_images", "reused_images",
                     "percentage"],
        "properties": {
            **{name: {"type": "integer", "minimum": 0} for name in (
                "total_products", "processed_products", "total_images", "processed_images",
                "succeeded_images", "failed_images")},
            "reused_images": {"type": "integer", "minimum": 0, "description": "of the "
                              "succeeded images, those that reused an earlier job's output "
                              "because the image had not changed"},
            "percentage": {"type": "number", "minimum": 0, "maximum": 100},
        },
    },
    "Status": {
        "type": "object",
        "required": ["request_id", "status", "message", "progress", "created_at",
                     "updated_at", "completed_at"],
        "properties": {
            "request_id": {"type": "string"}, "status": ref("JobState"),
            "message": {"type": "string"}, "progress": ref("Progress"),
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "completed_at": nullable("string", format="date-time"),
        },
    },
    "Links": {
        "type": "object",
        "required": list(LINKS),
        "properties": {name: {"type": "string", "format": "uri"} for name in LINKS},
    },
    "UploadAnswer": {
        "allOf": [ref("Links"), {
            "type": "object",
            "required": ["request_id", "status", "message", "total_products", "total_images",
                         "webhook_url"],
            "properties": {
                "request_id": {"type": "string"}, "status": ref("JobState"),
                "message": {"type": "string"},
                "total_products": {"type": "integer"}, "total_images": {"type": "integer"},
                "webhook_url": nullable("string"),
            },
        }],
    },
    "Image": {
        "type": "object",
        "required": ["input_url", "output_url", "status", "error", "bytes_in", "bytes_out",
                     "width", "height", "kept_input", "reused", "renditions"],
        "properties": {
            "input_url": {"type": "string"}, "output_url": nullable("string"),
            "status": {"type": "string", "enum": ["pending", "processing", "succeeded",
                                                  "failed", "cancelled"]},
            "error": {"type": "object", "nullable": True, "required": ["code", "message"],
                      "properties": {"code": {"type": "string"},
                                     "message": {"type": "string"}}},
            **{name: nullable("integer") for name in ("bytes_in", "bytes_out", "width",
                                                        "height")},
            "kept_input": nullable("boolean", description="true when the input's own picture, "
                                   "stripped of metadata, was kept because it was smaller "
                                   "than a new encoding; null until the image is produced"),
            "reused": {"type": "boolean", "description": "true when the output is a copy of "
                       "an earlier job's (same owner, URL and options): the host answered 304 "
                       "or sent the same bytes, so nothing was decoded or encoded"},
            "renditions": {"type": "array", "items": ref("Rendition"),
                           "description": "one output per size asked at upload, in that "
                                          "order, once the image is produced"},
        },
    },
    "Rendition": {
        "type": "object",
        "required": ["size", "output_url", "width", "height", "bytes_out"],
        "properties": {
            "size": {"type": "integer", "description": "the longest side asked for; the "
                     "image's own size when it is smaller (never enlarged)"},
            "output_url": {"type": "string"},
            "width": {"type": "integer"}, "height": {"type": "integer"},
            "bytes_out": {"type": "integer"},
        },
    },
    "Product": {
        "type": "object",
        "description": "`status` is its images' state in the job's words: pending, processing, "
                       "then cancelled if one image was, failed if none succeeded, else "
                       "completed",
        "required": ["serial_number", "product_name", "status", "line", "input_image_urls",
                     "output_image_urls", "images"],
        "properties": {
            "serial_number": {"type": "string"}, "product_name": {"type": "string"},
            "status": ref("JobState"),
            "line": {"type": "integer", "description": "its line in the uploaded CSV"},
            "input_image_urls": {"type": "array", "items": {"type": "string"}},
            "output_image_urls": {"type": "array", "items": nullable("string")},
            "images": {"type": "array", "items": ref("Image")},
        },
    },
    "Details": {
        "allOf": [ref("Status"), {
            "type": "object",
            "required": ["csv_filename", "total_products", "processed_products",
                         "completion_percentage", "options", "webhook", "offset", "limit",
                         "products"],
            "properties": {
                "csv_filename": nullable("string", description="the uploaded file's name; "
                                         "null for a raw text/csv body"),
                "total_products": {"type": "integer", "minimum": 0,
                                   "description": "as progress.total_products (older clients)"},
                "processed_products": {"type": "integer", "minimum": 0, "description":
                                       "as progress.processed_products (older clients)"},
                "completion_percentage": {"type": "number", "minimum": 0, "maximum": 100,
                                          "description": "as progress.percentage (older "
                                          "clients)"},
                "options": {"type": "object", "properties": {
                    "quality": {"type": "integer"}, "max_dimension": nullable("integer"),
                    "format": {"type": "string"}, "progressive": {"type": "boolean"},
                    "sizes": {"type": "array", "items": {"type": "integer"}},
                    "reuse": {"type": "boolean"}}},
                "webhook": ref("Webhook"),
                "offset": {"type": "integer"}, "limit": {"type": "integer"},
                "products": {"type": "array", "items": ref("Product")},
            },
        }],
    },
    "Webhook": {
        "type": "object", "description": "where the job's webhook stands, with every attempt",
        "required": ["url", "state", "id", "attempts", "next_attempt_at"],
        "properties": {
            "url": nullable("string"),
            "state": {"type": "string", "enum": ["pending", "delivered", "failed", "none"],
                      "description": "`none`: the job has no webhook_url"},
            "id": nullable("string", description="the `webhook-id` header, the same on "
                                                  "every attempt; null until the job ends"),
            "attempts": {"type": "array", "items": ref("WebhookAttempt")},
            "next_attempt_at": nullable("string", format="date-time"),
        },
    },
    "WebhookAttempt": {
        "type": "object",
        "required": ["number", "at", "duration_ms", "status_code", "error"],
        "properties": {
            "number": {"type": "integer", "minimum": 1},
            "at": {"type": "string", "format": "date-time"},
            "duration_ms": {"type": "integer", "minimum": 0},
            "status_code": nullable("integer", description="null when nothing answered"),
            "error": {"type": "object", "nullable": True, "required": ["code", "message"],
                      "properties": {"code": {"type": "string"},
                                     "message": {"type": "string"}}},
        },
    },
    "Retried": {
        "allOf": [ref("Status"), {
            "type": "object", "required": ["retried_images"],
            "properties": {"retried_images": {"type": "integer", "minimum": 1}},
        }],
    },
    "JobList": {
        "type": "object", "required": ["offset", "limit", "total", "jobs"],
        "properties": {
            "offset": {"type": "integer"}, "limit": {"type": "integer"},
            "total": {"type": "integer"},
            "jobs": {"type": "array", "items": {"allOf": [ref("Status"), ref("Links")]}},
        },
    },
    "Readiness": {
        "type": "object", "required": ["status", "checks"],
        "properties": {"status": {"type": "string", "enum": ["ready", "not ready"]},
                       "checks": {"type": "object",
                                  "additionalProperties": {"type": "string"}}},
    },
}  # fmt: skip
