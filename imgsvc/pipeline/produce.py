"""Producing one slice of a job: each pending URL downloaded, compressed in the Pillow
thread pool straight into storage (its main output and one per size, from one
decode) or an earlier job's outputs reused (reuse.py), and its outcome committed
with others in batches.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO

from .. import metrics
from ..db import Database
from ..models import EarlierOutput, ImageRecord, ImageStatus, Job, Rendition, Validators
from ..storage import Storage, image_name, output_names
from . import compress
from .budget import Held
from .fetch import UNKNOWN, Download, Fetcher, FetchError
from .finish import StorageFailure
from .refusals import Refusals
from .reuse import Produced, SameBytes, reuse, sha256_hex

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
    max_pixels: int


class SliceRun:
    """One slice of a job: a task for each of its pending URLs, which waits for its host's
    turn inside the fetcher, where a busy or paused host holds back no other host's URLs;
    the fetcher bounds the downloads, the byte budget the bodies held."""

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
        self._key = job.options.output_key()
        self._recorder = Recorder(pipeline.db, job.id, self._key)
        self._refusals = Refusals(pipeline.fetcher.policy)
        self._feeder: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Task[None]] = {}  # by URL, before its first request
        self.stopped = False
        self.in_flight: set[str] = set()  # URLs being downloaded or compressed right now

    async def process(self) -> None:
        """Produce the slice's pending URLs; every outcome is committed before returning."""
        ticker = asyncio.create_task(self._recorder.tick())
        try:
            async with asyncio.TaskGroup() as group:
                if not self.stopped:
                    self._feeder = group.create_task(self._feed(group))
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            await asyncio.shield(self._recorder.flush())

    def stop(self) -> None:
        """Start no more downloads; the images in flight finish."""
        self.stopped = True
        if self._feeder is not None:
            self._feeder.cancel()
        for task in self._waiting.values():
            task.cancel()

    async def _feed(self, group: asyncio.TaskGroup) -> None:
        # Outcomes are committed as the slice goes, so a page after `after` is stable. A
        # slice has no more URLs than a page (SLICE_SIZE): this is a task for each.
        after = ""
        while urls := await self._p.db.slice_urls(self._job.id, self._slice, after, PAGE_SIZE):
            after = urls[-1]
            kept = await self._refuse(urls)
            earlier: dict[str, EarlierOutput] = {}
            if self._job.options.reuse and kept:
                earlier = await self._p.db.earlier_outputs(self._job.id, self._key, kept)
            for url in kept:
                self._waiting[url] = group.create_task(self._take(url, earlier.get(url)))

    async def _refuse(self, urls: list[str]) -> list[str]:
        """Fail at once, in one batch, the URLs refused before any download (an invalid
        URL, a blocked address); the others, to download."""
        kept: list[str] = []
        refused: list[ImageRecord] = []
        for url in urls:
            error = self._refusals.refusal(url)
            if error is None:
                kept.append(url)
            else:
                refused.append(
                    ImageRecord(url, ImageStatus.FAILED, None, error.code, error.message)
                )
        for record in refused:
            metrics.record_image(record)
        await self._recorder.add_all([Produced(record) for record in refused])
        return kept

    async def _take(self, url: str, earlier: EarlierOutput | None) -> None:
        try:
            # The body stays counted in the byte budget until it is compressed.
            async with self._p.fetcher.hold() as held:
                produced = await self._produce(url, earlier, held)
        finally:
            self._waiting.pop(url, None)
            self.in_flight.discard(url)
        metrics.record_image(produced.record)
        await self._recorder.add(produced)

    def _started(self, url: str) -> None:
        """`url`'s request went out: it is in flight, and is let finish by a stop."""
        if self._waiting.pop(url, None) is not None:
            self.in_flight.add(url)

    async def _produce(self, url: str, earlier: EarlierOutput | None, held: Held) -> Produced:
        name = image_name(self._job.id, url, self._options.format.extension)
        try:
            download = await self._fetch(url, earlier.validators if earlier else UNKNOWN, held)
            if download.body is None and earlier is not None:  # unchanged, says the host
                if reused := await self._reuse(earlier, name, download.validators):
                    return reused
                download = await self._fetch(url, UNKNOWN, held)  # the earlier output is gone
        except FetchError as exc:
            return Produced(ImageRecord(url, ImageStatus.FAILED, None, exc.code, exc.message))
        data = download.body
        assert data is not None  # an unconditional request has a body
        try:
            return await self._encode(url, name, data, download.validators, earlier)
        except SameBytes:  # the same bytes again
            assert earlier is not None
            if reused := await self._reuse(earlier, name, download.validators):
                return reused
            return await self._encode(url, name, data, download.validators, None)

    async def _fetch(self, url: str, known: Validators, held: Held) -> Download:
        with metrics.FETCH_SECONDS.time():
            return await self._p.fetcher.fetch(url, known, held, partial(self._started, url))

    async def _reuse(
        self, earlier: EarlierOutput, name: str, validators: Validators
    ) -> Produced | None:
        try:
            return await reuse(self._p.storage, earlier, name, validators)
        except OSError as exc:
            raise StorageFailure(_storage_reason(exc)) from exc

    async def _encode(
        self,
        url: str,
        name: str,
        data: bytes,
        validators: Validators,
        earlier: EarlierOutput | None,
    ) -> Produced:
        """The image made from `data`, remembered with the body's SHA-256, both computed in
        one trip to the Pillow pool; SameBytes, nothing stored, if `earlier` came from them."""
        sizes = self._job.options.sizes
        names = output_names(name, sizes)
        encode = partial(
            _hashed_compress,
            data,
            earlier.sha256 if earlier else None,
            options=self._options,
            sizes=sizes,
            max_pixels=self._p.max_pixels,
        )
        started = time.perf_counter()  # not on SameBytes: nothing was compressed then
        try:
            (digest, results), stored = await self._p.storage.put_images(
                names, encode, self._p.pool
            )
        except compress.ImageError as exc:
            metrics.COMPRESS_SECONDS.observe(time.perf_counter() - started)
            return Produced(
                ImageRecord(url, ImageStatus.FAILED, None, exc.code, exc.message, len(data))
            )
        except OSError as exc:
            raise StorageFailure(_storage_reason(exc)) from exc
        metrics.COMPRESS_SECONDS.observe(time.perf_counter() - started)
        main = results[0]
        renditions = tuple(
            Rendition(size, sized, result.width, result.height, size_out)
            for size, sized, result, size_out in zip(
                sizes, names[1:], results[1:], stored[1:], strict=True
            )
        )
        record = ImageRecord(
            url, ImageStatus.SUCCEEDED, names[0], None, None, len(data), stored[0],
            main.width, main.height, main.kept_input, renditions=renditions,
        )  # fmt: skip
        return Produced(record, EarlierOutput(validators, digest, record))


def _hashed_compress(
    data: bytes,
    earlier: str | None,
    outs: Sequence[BinaryIO],
    options: compress.EncodeOptions,
    sizes: Sequence[int],
    max_pixels: int,
) -> tuple[str, list[compress.ImageResult]]:
    """The body's SHA-256 (SameBytes if it is `earlier`), then compress.compress_sizes."""
    digest = sha256_hex(data, earlier)
    return digest, compress.compress_sizes(data, outs, options, sizes, max_pixels)


def _storage_reason(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"the storage has no room for more images ({what})"
    return f"images could not be stored ({what})"


class Recorder:
    """Collects image outcomes and commits them in batches, each with what later jobs may
    reuse of it."""

    def __init__(self, db: Database, job_id: str, options_key: str) -> None:
        self._db = db
        self._job_id = job_id
        self._key = options_key
        self._pending: list[Produced] = []
        self._lock = asyncio.Lock()

    async def add(self, produced: Produced) -> None:
        await self.add_all([produced])

    async def add_all(self, produced: list[Produced]) -> None:
        self._pending.extend(produced)
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
                await self._db.record_images(
                    self._job_id,
                    [p.record for p in batch],
                    options_key=self._key,
                    remember=[p.remember for p in batch if p.remember is not None],
                )
