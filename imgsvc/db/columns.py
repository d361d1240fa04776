"""The column lists, the SQL list of ended states and the stored form of renditions, the
same in every backend: a record is read from its columns in this order (each backend's
rows.py turns rows into records)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..models import JobStatus, Rendition

# The ended states as an SQL list, from the one place that says which they are.
TERMINAL = "(" + ", ".join(f"'{status}'" for status in JobStatus if status.terminal) + ")"

JOB_COLUMNS = (
    "id, status, message, created_at, updated_at, completed_at, base_url, webhook_url, "
    "quality, max_dimension, format, progressive, reuse, header, total_products, total_images, "
    "processed_products, processed_images, succeeded_images, failed_images, csv_filename, "
    "reused_images, sizes"
)
IMAGE_COLUMNS = (
    "url, status, output_name, error_code, error_message, bytes_in, bytes_out, width, height, "
    "kept_input, reused, renditions"
)
# An earlier output: its validators and digest, then its outcome's columns, named as in
# images (an outcome read from here is a succeeded image of the job that made it).
EARLIER_COLUMNS = (
    "etag, last_modified, sha256, url, output_name, bytes_in, bytes_out, width, height, "
    "kept_input, renditions"
)
# Remembering an output again for the same owner, options and URL replaces what was there.
EARLIER_UPSERT = "ON CONFLICT (owner, options_key, url) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in ("job_id", *EARLIER_COLUMNS.split(", ")) if c != "url"
)


def remember_statement(job_owner: str, placeholder: str) -> str:
    """The upsert that remembers one output for later jobs of a job's owner, in a backend's
    placeholder style; `job_owner` is its sub-select of the owner by job id. Its parameters:
    that job id, the options key, the job id again, then the EARLIER_COLUMNS."""
    values = ", ".join([placeholder] * (2 + len(EARLIER_COLUMNS.split(", "))))
    return (
        f"INSERT INTO earlier_outputs (owner, options_key, job_id, {EARLIER_COLUMNS}) "
        f"VALUES ({job_owner}, {values}) {EARLIER_UPSERT}"
    )


DELIVERY_COLUMNS = "id, job_id, url, payload, state, attempts, round_start, next_attempt_at"
ATTEMPT_COLUMNS = "number, at, duration_ms, status_code, error_code, error_message"
WORK_COLUMNS = "id, job_id, kind, slice"


def stored_renditions(renditions: Iterable[Rendition]) -> list[list[Any]] | None:
    """An image's renditions as its JSON column holds them: [size, name, width, height,
    bytes] each, compact because a job may have 100,000 images; None when there are none."""
    rows = [[r.size, r.output_name, r.width, r.height, r.bytes_out] for r in renditions]
    return rows or None


def read_renditions(rows: list[list[Any]] | None) -> tuple[Rendition, ...]:
    """An image's renditions from their stored form."""
    return tuple(Rendition(*row) for row in rows or ())
