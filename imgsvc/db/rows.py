"""Row shapes: column lists, times as stored, and rows turned into records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ..models import Delivery, DeliveryState, ImageRecord, ImageStatus, Job, JobOptions, JobStatus


class KeyTaken(Exception):
    """An Idempotency-Key is already stored with another job."""


def now() -> str:
    """The current time as the API shows it: ISO 8601, UTC, milliseconds."""
    return in_seconds(0)


def in_seconds(seconds: float) -> str:
    """A time `seconds` from now, in the format of `now()` (so stored times compare as text)."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# The ended states as an SQL list, from the one place that says which they are.
TERMINAL = "(" + ", ".join(f"'{status}'" for status in JobStatus if status.terminal) + ")"

JOB_COLUMNS = (
    "id, status, message, created_at, updated_at, completed_at, base_url, webhook_url, "
    "quality, max_dimension, format, header, total_products, total_images, "
    "processed_products, processed_images, succeeded_images, failed_images, csv_filename"
)
IMAGE_COLUMNS = (
    "url, status, output_name, error_code, error_message, bytes_in, bytes_out, width, height"
)
DELIVERY_COLUMNS = "id, job_id, url, payload, state, attempts, round_start, next_attempt_at"
ATTEMPT_COLUMNS = "number, at, duration_ms, status_code, error_code, error_message"


def owned(where: str, args: tuple[Any, ...], owner: str | None) -> tuple[str, tuple[Any, ...]]:
    """`where` narrowed to one owner's jobs; None (API keys off) narrows nothing."""
    if owner is None:
        return where, args
    return f"{where} AND owner = ?", (*args, owner)


def job_values(job: Job) -> tuple[Any, ...]:
    o = job.options
    return (
        job.id, job.status, job.message, job.created_at, job.updated_at, job.completed_at,
        job.base_url, job.webhook_url, o.quality, o.max_dimension, o.format,
        json.dumps(job.header), job.total_products, job.total_images, job.processed_products,
        job.processed_images, job.succeeded_images, job.failed_images, job.csv_filename,
    )  # fmt: skip


def job_from(row: Any) -> Job:
    (id_, status, message, created, updated, completed, base_url, webhook_url, quality,
     max_dimension, fmt, header, *counters) = row  # fmt: skip
    return Job(
        id_, JobStatus(status), message, created, updated, completed, base_url, webhook_url,
        JobOptions(quality, max_dimension, fmt), tuple(json.loads(header)), *counters,
    )  # fmt: skip


def delivery_from(row: Any) -> Delivery:
    id_, job_id, url, payload, state, *rest = row
    return Delivery(id_, job_id, url, payload, DeliveryState(state), *rest)


def image_from(row: Any) -> ImageRecord:
    url, status, *rest = row
    return ImageRecord(url, ImageStatus(status), *rest)
