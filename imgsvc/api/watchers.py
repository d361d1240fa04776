"""Watching jobs for many streams at once: one read of a job per interval, fanned out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from ..db import Database
from ..models import Job

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5  # seconds between reads of a watched job's row


class JobWatchers:
    """Reads each watched job once per interval, whatever the number of streams on it, and
    hands every stream the job as last read: 300 browsers on one job cost one read, and so
    do 300 arriving at once."""

    def __init__(self, db: Database, interval: float = POLL_INTERVAL) -> None:
        self._db = db
        self._interval = interval
        self._watches: dict[str, _Watch] = {}
        self._polls: set[asyncio.Task[None]] = set()  # replaced watches' too, until they end

    async def latest(self, job_id: str) -> tuple[Job, str | None] | None:
        """The job as last read for its watchers, with its owner (None once it is gone);
        for a job nobody watches yet, its first read. A stream opening on the job just
        after this call is handed the same read, not a new one."""
        watch = self._watch(job_id)
        if not watch.reads:
            watch.watchers += 1
            try:
                await watch.next_read.wait()  # its first read, or that read's failure
            finally:
                watch.watchers -= 1
        if not watch.reads:  # read here, so that this request fails as the database does
            return await self._db.get_job_and_owner(job_id)
        return None if watch.job is None else (watch.job, watch.owner)

    async def follow(self, job_id: str) -> AsyncIterator[Job | None]:
        """The job at every read, first the latest one (None once it is gone), until it
        has ended."""
        watch = self._watch(job_id)
        watch.watchers += 1
        seen = 0
        try:
            while True:
                while watch.reads == seen:
                    await watch.next_read.wait()
                seen = watch.reads
                yield watch.job
                if watch.ended:
                    return
        finally:
            watch.watchers -= 1

    async def close(self) -> None:
        for task in self._polls:
            task.cancel()
        await asyncio.gather(*self._polls, return_exceptions=True)

    def _watch(self, job_id: str) -> _Watch:
        watch = self._watches.get(job_id)
        # An ended watch reads no more, and the job may have been retried since: a new
        # watcher gets a fresh read.
        if watch is None or watch.ended:
            watch = self._watches[job_id] = _Watch()
            task = asyncio.create_task(self._poll(job_id, watch))
            self._polls.add(task)
            task.add_done_callback(self._polls.discard)
        return watch

    async def _poll(self, job_id: str, watch: _Watch) -> None:
        # The watch outlives its last stream by up to one interval, so that a stream whose
        # request has just checked the job (`latest`) finds that read still here.
        try:
            while True:
                if not watch.ended:
                    await self._read(job_id, watch)
                await asyncio.sleep(self._interval)
                if not watch.watchers:
                    return
        finally:
            if self._watches.get(job_id) is watch:  # not replaced by a fresh one
                del self._watches[job_id]

    async def _read(self, job_id: str, watch: _Watch) -> None:
        try:
            found = await self._db.get_job_and_owner(job_id)
        except Exception:  # the streams wait for the next read rather than end
            log.exception("could not read job %s for its watchers", job_id)
        else:
            watch.job, watch.owner = found or (None, None)
            watch.reads += 1
        done, watch.next_read = watch.next_read, asyncio.Event()
        done.set()


class _Watch:
    """One watched job: the last read of it, and the streams waiting for the next."""

    def __init__(self) -> None:
        self.job: Job | None = None
        self.owner: str | None = None
        self.reads = 0
        self.next_read = asyncio.Event()
        self.watchers = 0

    @property
    def ended(self) -> bool:
        """Whether the job has been read gone or ended: nothing more to read."""
        return bool(self.reads) and (self.job is None or self.job.status.terminal)
