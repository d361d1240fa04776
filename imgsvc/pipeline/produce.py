"""Producing one slice of a job: each pending URL downloaded, compressed in the Pillow
thread pool straight into storage, and its outcome committed with others in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from .. import metrics
from ..db import Database
from ..models import ImageRecord, ImageStatus, Job
from ..storage import Storage, image_name
from . import compress
from .budget import Held
from .fetch import Fetcher, FetchError
from .finish import StorageFailure

PAGE_SIZE = 500  # URLs of a slice read at a time
FLUSH_INTERVAL = 0.5  # seconds; progress is visible within about this long
FLUSH_SIZE = 500  # outcomes; a larger batch is committed at once


@dataclass(frozen=True)
class Pipeline:
    """What processing an image needs, shared by every job."""

    db: Database
    storage: Storage
    fetcher: Fetcher
    pool: ThreadPoolExecutor  # Pillow and file writes; its size bounds the CPU work
    tasks_per_slice: int  # images of one slice in flight at most (bytes permitting)
    max_pixels: int


class SliceRun:
    """One slice of a job: its pending URLs, with a fixed number of tasks."""

    def __init__(self, pipeline: Pipeline, job: Job, slice_no: int) -> None:
        self._p = pipeline
        self._job = job
        self._slice = slice_no
        self._options = compress.EncodeOptions(
            quality=job.options.quality,
            max_dimension=job.options.max_dimension,
            format=job.options.format,
            progressive=job.options.progressive,
        )
        self._urls: asyncio.Queue[str | None] = asyncio.Queue(maxsize=pipeline.tasks_per_slice)
        self._recorder = Recorder(pipeline.db, job.id)
        self._feeder: asyncio.Task[None] | None = None
        self.stopped = False
        self.in_flight: set[str] = set()  # URLs being downloaded or compressed right now

    async def process(self) -> None:
        """Produce the slice's pending URLs; every outcome is committed before returning."""
        takers = self._p.tasks_per_slice
        ticker = asyncio.create_task(self._recorder.tick())
        try:
            async with asyncio.TaskGroup() as group:
                self._feeder = group.create_task(self._feed(takers))
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

    async def _feed(self, takers: int) -> None:
        # Outcomes are committed as the slice goes, so a page after `after` is stable.
        after = ""
        while urls := await self._p.db.slice_urls(self._job.id, self._slice, after, PAGE_SIZE):
            after = urls[-1]
            for url in urls:
                await self._urls.put(url)
        for _ in range(takers):
            await self._urls.put(None)

    async def _take(self) -> None:
        while (url := await self._urls.get()) is not None and not self.stopped:
            self.in_flight.add(url)
            try:
                # The body stays counted in the byte budget until it is compressed.
                async with self._p.fetcher.hold() as held:
                    record = await self._produce(url, held)
            finally:
                self.in_flight.discard(url)
            metrics.record_image(record)
            await self._recorder.add(record)

    async def _produce(self, url: str, held: Held) -> ImageRecord:
        try:
            with metrics.FETCH_SECONDS.time():
                data = await self._p.fetcher.fetch(url, held)
        except FetchError as exc:
            return ImageRecord(url, ImageStatus.FAILED, None, exc.code, exc.message)
        name = image_name(self._job.id, url, self._options.format.extension)
        encode = partial(
            compress.compress, data, options=self._options, max_pixels=self._p.max_pixels
        )
        try:
            with metrics.COMPRESS_SECONDS.time():
                result, size = await self._p.storage.put_image(name, encode, self._p.pool)
        except compress.ImageError as exc:
            return ImageRecord(url, ImageStatus.FAILED, None, exc.code, exc.message, len(data))
        except OSError as exc:
            raise StorageFailure(_storage_reason(exc)) from exc
        return ImageRecord(
            url, ImageStatus.SUCCEEDED, name, None, None, len(data), size,
            result.width, result.height, result.kept_input,
        )  # fmt: skip


def _storage_reason(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"the storage has no room for more images ({what})"
    return f"images could not be stored ({what})"


class Recorder:
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
            # Shielded: stopping the ticker mid-commit must not drop the batch it holds.
            await asyncio.shield(self.flush())

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if batch:
                await self._db.record_images(self._job_id, batch)
