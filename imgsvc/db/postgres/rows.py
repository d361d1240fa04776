"""Row shapes: column lists, the database's clock, and rows turned into records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from ...models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    EarlierOutput,
    ImageRecord,
    ImageStatus,
    Job,
    JobOptions,
    JobStatus,
    OutputFormat,
    Validators,
    WorkItem,
    WorkKind,
)
from ..columns import read_renditions, stored_renditions

# The database's clock: `clock_timestamp()`, not `now()`, which stands still for the whole
# transaction. NOW_PLUS is the same `%s` seconds from now.
NOW = "clock_timestamp()"
NOW_PLUS = "clock_timestamp() + make_interval(secs => %s)"
FREE = f"(lease_until IS NULL OR lease_until < {NOW})"


def qualified(table: str, columns: str) -> str:
    """A column list with each column named by its table, as `UPDATE ... FROM` needs."""
    return ", ".join(f"{table}.{column}" for column in columns.split(", "))


def utc(moment: datetime | None) -> datetime | None:
    """A time read from the database in UTC, whatever the session's time zone."""
    return None if moment is None else moment.astimezone(UTC)


def owned(where: str, args: tuple[Any, ...], owner: str | None) -> tuple[str, tuple[Any, ...]]:
    """`where` narrowed to one owner's jobs; None (API keys off) narrows nothing."""
    if owner is None:
        return where, args
    return f"{where} AND owner = %s", (*args, owner)


def job_values(job: Job) -> tuple[Any, ...]:
    o = job.options
    return (
        job.id, str(job.status), job.message, job.created_at, job.updated_at, job.completed_at,
        job.base_url, job.webhook_url, o.quality, o.max_dimension, str(o.format), o.progressive,
        o.reuse, Jsonb(list(job.header)), job.total_products, job.total_images,
        job.processed_products, job.processed_images, job.succeeded_images, job.failed_images,
        job.csv_filename, job.reused_images, list(o.sizes),
    )  # fmt: skip


def job_from(row: Any) -> Job:
    (id_, status, message, created, updated, completed, base_url, webhook_url, quality,
     max_dimension, fmt, progressive, reuse, header, *counters, sizes) = row  # fmt: skip
    options = JobOptions(
        quality, max_dimension, OutputFormat(fmt), progressive, tuple(sizes), reuse
    )
    return Job(
        id_, JobStatus(status), message, created.astimezone(UTC), updated.astimezone(UTC),
        utc(completed), base_url, webhook_url, options, tuple(header), *counters,
    )  # fmt: skip


def delivery_from(row: Any) -> Delivery:
    id_, job_id, url, payload, state, attempts, round_start, next_attempt_at = row
    return Delivery(id_, job_id, url, payload, DeliveryState(state), attempts, round_start,
                    utc(next_attempt_at))  # fmt: skip


def attempt_from(row: Any) -> DeliveryAttempt:
    number, at, *rest = row
    return DeliveryAttempt(number, at.astimezone(UTC), *rest)


def work_from(row: Any) -> WorkItem:
    id_, job_id, kind, slice_no = row
    return WorkItem(id_, job_id, WorkKind(kind), slice_no)


def image_from(row: Any) -> ImageRecord:
    url, status, name, code, message, bytes_in, bytes_out, width, height, kept, reused, sizes = row
    return ImageRecord(url, ImageStatus(status), name, code, message, bytes_in, bytes_out,
                       width, height, kept, reused, read_renditions(sizes))  # fmt: skip


def renditions_value(record: ImageRecord) -> Jsonb | None:
    """The renditions column of an image's outcome."""
    rows = stored_renditions(record.renditions)
    return None if rows is None else Jsonb(rows)


def earlier_values(output: EarlierOutput) -> tuple[Any, ...]:
    """An earlier output's EARLIER_COLUMNS."""
    o = output.outcome
    return (
        output.validators.etag, output.validators.last_modified, output.sha256, o.url,
        o.output_name, o.bytes_in, o.bytes_out, o.width, o.height, o.kept_input,
        renditions_value(o),
    )  # fmt: skip


def earlier_from(row: Any) -> EarlierOutput:
    (etag, last_modified, sha256, url, name, bytes_in, bytes_out, width, height, kept,
     sizes) = row  # fmt: skip
    outcome = ImageRecord(url, ImageStatus.SUCCEEDED, name, None, None, bytes_in, bytes_out,
                          width, height, kept, renditions=read_renditions(sizes))  # fmt: skip
    return EarlierOutput(Validators(etag, last_modified), sha256, outcome)
