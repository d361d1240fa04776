"""Row shapes: column lists, times as stored, and rows turned into records.

Times are stored as ISO 8601 text in UTC with milliseconds and a `Z`, the one form SQLite's
own `strftime` writes too (`NOW`), so stored times compare as text, in SQL and here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, overload

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

# The database's clock in the stored form, and the same `?` seconds from now.
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
NOW_PLUS = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)"
# The number by which a job's images name it, from the job's id `?`.
JOB_NUMBER = "(SELECT number FROM jobs WHERE id = ?)"


def seconds(count: float) -> str:
    """The modifier that NOW_PLUS adds to the clock."""
    return f"{count:+.3f} seconds"


@overload
def stored(moment: datetime) -> str: ...
@overload
def stored(moment: None) -> None: ...
def stored(moment: datetime | None) -> str | None:
    """A time as a column holds it."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@overload
def read_time(text: str) -> datetime: ...
@overload
def read_time(text: None) -> None: ...
def read_time(text: str | None) -> datetime | None:
    """A stored time as a datetime in UTC."""
    return None if text is None else datetime.fromisoformat(text)


def owned(where: str, args: tuple[Any, ...], owner: str | None) -> tuple[str, tuple[Any, ...]]:
    """`where` narrowed to one owner's jobs; None (API keys off) narrows nothing."""
    if owner is None:
        return where, args
    return f"{where} AND owner = ?", (*args, owner)


def job_values(job: Job) -> tuple[Any, ...]:
    o = job.options
    return (
        job.id, job.status, job.message, stored(job.created_at), stored(job.updated_at),
        stored(job.completed_at),
        job.base_url, job.webhook_url, o.quality, o.max_dimension, o.format, int(o.progressive),
        int(o.reuse), json.dumps(job.header), job.total_products, job.total_images,
        job.processed_products, job.processed_images, job.succeeded_images, job.failed_images,
        job.csv_filename, job.reused_images, json.dumps(o.sizes),
    )  # fmt: skip


def job_from(row: Any) -> Job:
    (id_, status, message, created, updated, completed, base_url, webhook_url, quality,
     max_dimension, fmt, progressive, reuse, header, *counters, sizes) = row  # fmt: skip
    options = JobOptions(quality, max_dimension, OutputFormat(fmt), bool(progressive),
                         tuple(json.loads(sizes)), bool(reuse))  # fmt: skip
    return Job(
        id_, JobStatus(status), message, read_time(created), read_time(updated),
        read_time(completed), base_url, webhook_url, options, tuple(json.loads(header)),
        *counters,
    )  # fmt: skip


def delivery_from(row: Any) -> Delivery:
    id_, job_id, url, payload, state, attempts, round_start, next_attempt_at = row
    return Delivery(id_, job_id, url, payload, DeliveryState(state), attempts, round_start,
                    read_time(next_attempt_at))  # fmt: skip


def attempt_from(row: Any) -> DeliveryAttempt:
    number, at, *rest = row
    return DeliveryAttempt(number, read_time(at), *rest)


def work_from(row: Any) -> WorkItem:
    id_, job_id, kind, slice_no = row
    return WorkItem(id_, job_id, WorkKind(kind), slice_no)


def image_from(row: Any) -> ImageRecord:
    url, status, name, code, message, bytes_in, bytes_out, width, height, kept, reused, sizes = row
    return ImageRecord(url, ImageStatus(status), name, code, message, bytes_in, bytes_out,
                       width, height, None if kept is None else bool(kept), bool(reused),
                       read_renditions(sizes and json.loads(sizes)))  # fmt: skip


def renditions_value(record: ImageRecord) -> str | None:
    """The renditions column of an image's outcome."""
    rows = stored_renditions(record.renditions)
    return None if rows is None else json.dumps(rows)


def earlier_values(output: EarlierOutput) -> tuple[Any, ...]:
    """An earlier output's EARLIER_COLUMNS."""
    o = output.outcome
    return (
        output.validators.etag, output.validators.last_modified, output.sha256, o.url,
        o.output_name, o.bytes_in, o.bytes_out, o.width, o.height,
        None if o.kept_input is None else int(o.kept_input), renditions_value(o),
    )  # fmt: skip


def earlier_from(row: Any) -> EarlierOutput:
    (etag, last_modified, sha256, url, name, bytes_in, bytes_out, width, height, kept,
     sizes) = row  # fmt: skip
    outcome = ImageRecord(url, ImageStatus.SUCCEEDED, name, None, None, bytes_in, bytes_out,
                          width, height, None if kept is None else bool(kept),
                          renditions=read_renditions(sizes and json.loads(sizes)))  # fmt: skip
    return EarlierOutput(Validators(etag, last_modified), sha256, outcome)
