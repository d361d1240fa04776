"""The in-process job queue: a bounded pool of workers that runs jobs to a terminal state.

A job's pending images are read from SQLite a page at a time and handed to a fixed number
of tasks; each downloads one URL, compresses it in the Pillow thread pool straight into a
temp file, and reports the outcome to a recorder that commits outcomes in batches. Every
job runs with its own tasks while downloads and threads are shared, so a small job
submitted after a huge one starts at once and finishes in seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from . import csvio, images, logs, metrics
from .db import Database
from .fetch import Fetcher, FetchError
from .models import ImageRecord, ImageStatus, Job, JobStatus
from .payloads import image_url
from .storage import Storage, image_name
from .webhooks import outbox_entry

log = logging.getLogger(__name__)

PAGE_SIZE = 500
FLUSH_INTERVAL = 0.5  # seconds; progress is visible within about this long
FLUSH_SIZE = 500  # outcomes; a larger batch is committed at once


@dataclass(frozen=True)
class Pipeline:
    """What processing an image needs, shared by every job."""

    db: Database
    storage: Storage
    fetcher: Fetcher
    pool: ThreadPoolExecutor  # Pillow and file writes; its size bounds the CPU work
    tasks_per_job: int  # images of one job in flight at once
    max_pixels: int


class JobRunner:
    """Owns the queue of job ids and the worker tasks that process them."""

    def __init__(self, pipeline: Pipeline, workers: int) -> None:
        self._pipeline = pipeline
        self._db = pipeline.db
        self._workers = workers
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the workers and queue every job that has not ended, oldest first."""
        for job_id in await self._db.unfinished_jobs():
            self._queue.put_nowait(job_id)
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        """Stop the workers; unfinished work stays pending in the database for the next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def submit(self, job_id: str) -> None:
        """Queue a committed job."""
        self._queue.put_nowait(job_id)

    @property
    def queue_depth(self) -> int:
        """Jobs queued and not yet taken by a worker."""
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            logs.JOB_ID.set(job_id)  # every log line of this job carries its id
            try:
                await self._run(job_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("job %s stopped by an unexpected error", job_id)
                await self._db.finish_job(
                    job_id, JobStatus.FAILED, f"the job could not run: {exc}", outbox_entry
                )

    async def _run(self, job_id: str) -> None:
        if not await self._db.set_job_status(
            job_id, JobStatus.PROCESSING, "", only_from=JobStatus.PENDING
        ):
            return
        job = await self._db.get_job(job_id)
        assert job is not None
        log.info("job %s started: %d images", job_id, job.total_images)
        await _JobRun(self._pipeline, job).process()
        await self._finish(job_id)

    async def _finish(self, job_id: str) -> None:
        job = await self._db.get_job(job_id)
        assert job is not None
        loop = asyncio.get_running_loop()
        rows = _result_rows(self._db, job, loop)
        await loop.run_in_executor(
            self._pipeline.pool,
            self._pipeline.storage.write_results,
            job_id,
            lambda out: csvio.write_results(out, job.header, rows),
        )
        if job.succeeded_images:
            status, message = JobStatus.COMPLETED, ""
        else:
            status, message = JobStatus.FAILED, "no image could be produced"
        await self._db.finish_job(
            job_id, status, message, outbox_entry, only_from=JobStatus.PROCESSING
        )
        log.info("job %s %s", job_id, status)


class _JobRun:
    """One pass over a job's pending images."""

    def __init__(self, pipeline: Pipeline, job: Job) -> None:
        self._p = pipeline
        self._job = job
        self._options = images.EncodeOptions(
            quality=job.options.quality,
            max_dimension=job.options.max_dimension,
            format=images.OutputFormat(job.options.format),
        )
        self._urls: asyncio.Queue[str | None] = asyncio.Queue(maxsize=pipeline.tasks_per_job)
        self._recorder = _Recorder(pipeline.db, job.id)

    async def process(self) -> None:
        tasks = [asyncio.create_task(self._take()) for _ in range(self._p.tasks_per_job)]
        ticker = asyncio.create_task(self._recorder.tick())
        try:
            await self._feed(len(tasks))
            await asyncio.gather(*tasks)
        finally:
            for task in (*tasks, ticker):
                task.cancel()
            await asyncio.gather(*tasks, ticker, return_exceptions=True)
            await asyncio.shield(self._recorder.flush())

    async def _feed(self, takers: int) -> None:
        # A URL is produced once per job: its outcome is stored for all its occurrences,
        # so later pages no longer list them, and `seen` covers the pages read before.
        seen: set[str] = set()
        after = (-1, -1)
        while page := await self._p.db.pending_images(self._job.id, after, PAGE_SIZE):
            after = (page[-1].product_seq, page[-1].position)
            for image in page:
                if image.url not in seen:
                    seen.add(image.url)
                    await self._urls.put(image.url)
        for _ in range(takers):
            await self._urls.put(None)

    async def _take(self) -> None:
        while (url := await self._urls.get()) is not None:
            record = await self._produce(url)
            metrics.record_image(record)
            await self._recorder.add(record)

    async def _produce(self, url: str) -> ImageRecord:
        try:
            with metrics.FETCH_SECONDS.time():
                data = await self._p.fetcher.fetch(url)
        except FetchError as exc:
            return ImageRecord(url, ImageStatus.FAILED, None, exc.code, exc.message)
        name = image_name(self._job.id, url, self._options.format.extension)
        encode = partial(
            images.compress, data, options=self._options, max_pixels=self._p.max_pixels
        )
        try:
            with metrics.COMPRESS_SECONDS.time():
                result, size = await asyncio.get_running_loop().run_in_executor(
                    self._p.pool, self._p.storage.write_image, name, encode
                )
        except images.ImageError as exc:
            return ImageRecord(url, ImageStatus.FAILED, None, exc.code, exc.message, len(data))
        return ImageRecord(
            url, ImageStatus.SUCCEEDED, name, None, None, len(data), size,
            result.width, result.height,
        )  # fmt: skip


class _Recorder:
    """Collects image outcomes and commits them in batches."""

    def __init__(self, db: Database, job_id: str) -> None:
        self._db = db
        self._job_id = job_id
        self._pending: list[ImageRecord] = []
        self._lock = asyncio.Lock()

    async def add(self, record: ImageRecord) -> None:
        self._pending.append(record)
        if len(self._pending) >= FLUSH_SIZE:
            await self.flush()

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if batch:
                await self._db.record_images(self._job_id, batch)


def _result_rows(
    db: Database, job: Job, loop: asyncio.AbstractEventLoop
) -> Iterator[tuple[tuple[str, ...], list[str | None]]]:
    """The results CSV's rows, read page by page from a worker thread."""
    offset = 0
    while True:
        page = asyncio.run_coroutine_threadsafe(
            db.products(job.id, offset, PAGE_SIZE), loop
        ).result()
        if not page:
            return
        for product in page:
            urls = [
                image_url(job.base_url, i.output_name) if i.output_name else None
                for i in product.images
            ]
            yield product.cells, urls
        offset = page[-1].seq + 1
