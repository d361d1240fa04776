"""How a job ends: completed, cancelled or failed, always with its results CSV written first.

A job turns terminal only after its results CSV is in place, and every image it accepted
ends with a status of its own: nothing is dropped, whatever stopped the job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from ..api.payloads import image_url
from ..db import Database, products_from_thread, url_pages
from ..models import ImageStatus, Job, JobStatus, ProductRecord
from ..storage import Storage, image_names
from . import results
from .webhooks import outbox_entry

log = logging.getLogger(__name__)


class StorageFailure(Exception):
    """Storing an output failed (disk full, no permission, bucket refused): the job cannot go on."""


async def finished(db: Database, storage: Storage, job_id: str) -> None:
    """Every image has ended: write the results and mark the job completed (or failed)."""
    job = await write_results(db, storage, job_id)
    if job.succeeded_images:
        status, message = JobStatus.COMPLETED, ""
    else:
        status, message = JobStatus.FAILED, "no image could be produced"
    await db.finish_job(job_id, status, message, outbox_entry, only_from=JobStatus.PROCESSING)
    log.info("job %s %s", job_id, status)


async def cancelled(db: Database, storage: Storage, job_id: str) -> None:
    """Cancel what is left; the results CSV lists the images that were produced."""
    await db.end_pending_images(
        job_id,
        ImageStatus.CANCELLED,
        "cancelled",
        "the job was cancelled before this image was produced",
    )
    await _remove_cancelled_files(db, storage, job_id)
    job = await write_results(db, storage, job_id)
    message = (
        f"cancelled on request; {job.succeeded_images} of {job.total_images} images "
        "had been produced"
    )
    if await db.finish_job(job_id, JobStatus.CANCELLED, message, outbox_entry):
        log.info("job %s cancelled", job_id)


async def failed(db: Database, storage: Storage, job_id: str, exc: BaseException) -> bool:
    """End a job that cannot go on: its pending images fail with the reason, none dropped.

    False if even that could not be recorded: the job then stays as it was, to be resumed."""
    if isinstance(exc, StorageFailure):
        code, reason = "storage_error", str(exc)
    else:
        code, reason = "internal_error", f"the job could not run: {exc}"
    log.error("job %s failed: %s", job_id, reason, exc_info=exc)
    try:
        count = await db.end_pending_images(
            job_id, ImageStatus.FAILED, code, f"not produced: {reason}"
        )
        await write_results(db, storage, job_id)
    except Exception:
        # Nothing changed for good: the work is given back, to be claimed again.
        log.exception("job %s: could not record its failure", job_id)
        return False
    await db.finish_job(
        job_id, JobStatus.FAILED,
        f"{reason}; {count} images were not produced (POST /api/retry/{job_id} redoes them)",
        outbox_entry,
    )  # fmt: skip
    return True


async def write_results(db: Database, storage: Storage, job_id: str) -> Job:
    """Write the job's results CSV as things stand (atomically); the job as it was read."""
    job = await db.get_job(job_id)
    assert job is not None
    # Not in the Pillow pool: the thread mostly waits for pages of rows from the event loop,
    # and a compression slot held that long would slow every other job.
    rows = _result_rows(db, job, asyncio.get_running_loop())
    columns = results.sized_columns(results.OUTPUT_COLUMN, job.options.sizes)
    await storage.put_results(
        job_id, lambda out: results.write_results(out, job.header, rows, columns)
    )
    return job


async def _remove_cancelled_files(db: Database, storage: Storage, job_id: str) -> None:
    # An image written just before the cancel, whose outcome was never recorded, is not part
    # of the results: its file goes, so every stored file belongs to a recorded image.
    job = await db.get_job(job_id)
    assert job is not None
    async for urls in url_pages(db, job_id, ImageStatus.CANCELLED):
        await storage.remove_images(image_names(job, urls))


def _result_rows(
    db: Database, job: Job, loop: asyncio.AbstractEventLoop
) -> Iterator[tuple[tuple[str, ...], results.Outputs]]:
    """The results CSV's rows, read page by page from a worker thread."""
    for product in products_from_thread(db, job.id, loop):
        yield product.cells, output_urls(job, product)


def output_urls(job: Job, product: ProductRecord) -> list[list[str | None]]:
    """The product's output URLs by results column (the main outputs, then each size's),
    one entry per input URL; None where there is no output."""
    names = [image.output_names(job.options.sizes) for image in product.images]
    return [
        [image_url(job.base_url, name) if name else None for name in column]
        for column in zip(*names, strict=True)
    ]
