"""The in-process job queue: a bounded pool of workers that runs jobs to a terminal state.

A job's pending images are read from SQLite a page at a time and handed to a fixed number
of tasks; each downloads one URL, compresses it in the Pillow thread pool straight into a
temp file, and reports the outcome to a recorder that commits outcomes in batches.

Jobs are time-sliced: a worker takes the job at the head of the queue, produces up to
SLICE_SIZE of its URLs and, if it has more, puts it at the back. Downloads and threads are
shared, so a small job submitted after a huge one starts within one slice and finishes in
seconds, however many huge jobs are running.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from functools import partial
from typing import Any

from .. import logs, metrics
from ..db import Database
from ..models import ImageRecord, ImageStatus, Job, JobStatus
from ..storage.local import Storage, image_name
from . import compress, finish
from .fetch import Fetcher, FetchError
from .finish import StorageFailure

log = logging.getLogger(__name__)

PAGE_SIZE = 500
FLUSH_INTERVAL = 0.5  # seconds; progress is visible within about this long
FLUSH_SIZE = 500  # outcomes; a larger batch is committed at once
SLICE_SIZE = 500  # URLs a job produces before a waiting job gets the worker


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
    """Owns the queue of job ids and the worker tasks that process them, a slice at a time."""

    def __init__(self, pipeline: Pipeline, workers: int) -> None:
        self._pipeline = pipeline
        self._db = pipeline.db
        self._workers = workers
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._active: dict[str, asyncio.Task[bool]] = {}  # job id -> the slice running now
        self._runs: dict[str, _JobRun] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        """Start the workers and queue every job that has not ended, oldest first."""
        for job_id in await self._db.unfinished_jobs():
            self.submit(job_id)
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def drain(self, grace: float) -> None:
        """Start nothing new; give the images in flight `grace` seconds to finish."""
        self._stopping = True
        for run in self._runs.values():
            run.stop()
        if self._active:
            await asyncio.wait(self._active.values(), timeout=grace)

    async def stop(self) -> None:
        """Stop the workers; unfinished work stays pending in the database for the next start."""
        self._stopping = True
        tasks = [*self._tasks, *self._active.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        await self._db.requeue_interrupted()

    def submit(self, job_id: str) -> None:
        """Queue a committed job (once: a job already waiting keeps its place)."""
        if job_id not in self._queued and not self._stopping:
            self._queued.add(job_id)
            self._queue.put_nowait(job_id)

    def in_flight(self, job_id: str) -> frozenset[str]:
        """The URLs of a job being downloaded or compressed right now (shown as processing)."""
        run = self._runs.get(job_id)
        return frozenset(run.in_flight) if run else frozenset()

    @property
    def queue_depth(self) -> int:
        """Jobs queued and not yet taken by a worker."""
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def cancel(self, job_id: str) -> bool:
        """Stop a job that has not ended and end it as cancelled; False if it had ended."""
        if not await self._db.request_cancel(job_id):
            return False
        task, run = self._active.get(job_id), self._runs.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        if run is not None:
            await run.settle()
        await finish.cancelled(self._pipeline, job_id)
        return True

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            self._queued.discard(job_id)
            logs.JOB_ID.set(job_id)  # every log line of this job carries its id
            if self._stopping or job_id in self._active:
                continue
            task = asyncio.create_task(self._run(job_id))
            self._active[job_id] = task
            try:
                await asyncio.wait({task})
            finally:
                del self._active[job_id]
            if task.cancelled():
                continue
            if (exc := task.exception()) is not None:
                await finish.failed(self._pipeline, job_id, exc)
            elif task.result():
                self.submit(job_id)  # to the back of the queue: waiting jobs go first

    async def _run(self, job_id: str) -> bool:
        """One slice of a job; True when it has images left for another slice."""
        job = await self._db.get_job(job_id)
        if job is None or job.status.terminal:
            return False
        if await self._db.cancel_requested(job_id):  # a cancel a crash interrupted
            await finish.cancelled(self._pipeline, job_id)
            return False
        if job.status is JobStatus.PENDING:
            if not await self._db.set_job_status(
                job_id, JobStatus.PROCESSING, "", only_from=JobStatus.PENDING
            ):
                return False
            log.info("job %s started: %d images", job_id, job.total_images)
        if self._stopping:  # a stop began during the awaits above: drain() missed this slice
            return False
        run = self._runs[job_id] = _JobRun(self._pipeline, job)
        try:
            await run.process(SLICE_SIZE)
        finally:
            del self._runs[job_id]
        if run.stopped:
            return False
        if await self._db.pending_images(job_id, (-1, -1), 1):
            return True
        await finish.finished(self._pipeline, job_id)
        return False


class _JobRun:
    """One slice of a job: up to a number of its pending URLs, with a fixed number of tasks."""

    def __init__(self, pipeline: Pipeline, job: Job) -> None:
        self._p = pipeline
        self._job = job
        self._options = compress.EncodeOptions(
            quality=job.options.quality,
            max_dimension=job.options.max_dimension,
            format=job.options.format,
        )
        self._urls: asyncio.Queue[str | None] = asyncio.Queue(maxsize=pipeline.tasks_per_job)
        self._recorder = _Recorder(pipeline.db, job.id)
        self._writes: set[Future[Any]] = set()
        self._feeder: asyncio.Task[None] | None = None
        self.stopped = False
        self.in_flight: set[str] = set()  # URLs being downloaded or compressed right now

    async def process(self, limit: int) -> None:
        """Produce up to `limit` pending URLs; every outcome is committed before returning."""
        takers = self._p.tasks_per_job
        ticker = asyncio.create_task(self._recorder.tick())
        try:
            async with asyncio.TaskGroup() as group:
                self._feeder = group.create_task(self._feed(takers, limit))
                for _ in range(takers):
                    group.create_task(self._take())
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            await asyncio.shield(self._recorder.flush())

    def stop(self) -> None:
        """Hand out no more URLs; the images in flight finish."""
        self.stopped = True
        if self._feeder is not None:
            self._feeder.cancel()
        with contextlib.suppress(asyncio.QueueFull):
            while True:  # wakes every task waiting for a URL; they all stop
                self._urls.put_nowait(None)

    async def settle(self) -> None:
        """Wait for image writes still running in threads (a cancelled task leaves them)."""
        if self._writes:
            await asyncio.to_thread(wait_futures, list(self._writes))

    async def _feed(self, takers: int, limit: int) -> None:
        # A URL is produced once per job: its outcome is stored for all its occurrences,
        # so later pages no longer list them, and `seen` covers the pages read before.
        seen: set[str] = set()
        after = (-1, -1)
        while len(seen) < limit and (
            page := await self._p.db.pending_images(self._job.id, after, PAGE_SIZE)
        ):
            after = (page[-1].product_seq, page[-1].position)
            for image in page:
                if image.url not in seen and len(seen) < limit:
                    seen.add(image.url)
                    await self._urls.put(image.url)
        for _ in range(takers):
            await self._urls.put(None)

    async def _take(self) -> None:
        while (url := await self._urls.get()) is not None and not self.stopped:
            self.in_flight.add(url)
            try:
                record = await self._produce(url)
            finally:
                self.in_flight.discard(url)
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
            compress.compress, data, options=self._options, max_pixels=self._p.max_pixels
        )
        write = self._p.pool.submit(self._p.storage.write_image, name, encode)
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        try:
            with metrics.COMPRESS_SECONDS.time():
                result, size = await asyncio.wrap_future(write)
        except compress.ImageError as exc:
            return ImageRecord(url, ImageStatus.FAILED, None, exc.code, exc.message, len(data))
        except OSError as exc:
            raise StorageFailure(_storage_reason(exc)) from exc
        return ImageRecord(
            url, ImageStatus.SUCCEEDED, name, None, None, len(data), size,
            result.width, result.height,
        )  # fmt: skip


def _storage_reason(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"the data folder has no room for more images ({what})"
    return f"images could not be written into the data folder ({what})"


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
