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
    hands every stream the job as last read: 300 browsers on one job cost one read."""

    def __init__(self, db: Database, interval: float = POLL_INTERVAL) -> None:
        self._db = db
        self._interval = interval
        self._watches: dict[str, _Watch] = {}

    async def follow(self, job_id: str) -> AsyncIterator[Job | None]:
        """The job at every read, first the latest one (None once it is gone), until it
        has ended."""
        watch = self._watches.get(job_id)
        if watch is None:
            watch = self._watches[job_id] = _Watch()
            watch.task = asyncio.create_task(self._poll(job_id, watch))
        watch.watchers += 1
        seen = 0
        try:
            while True:
                if watch.reads == seen:
                    await watch.next_read.wait()
                seen = watch.reads
                yield watch.job
                if watch.job is None or watch.job.status.terminal:
                    return
        finally:
            watch.watchers -= 1
            if not watch.watchers:
                watch.task.cancel()
                del self._watches[job_id]

    async def close(self) -> None:
        tasks = [w.task for w in self._watches.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _poll(self, job_id: str, watch: _Watch) -> None:
        while watch.job is None or not watch.job.status.terminal:
            try:
                watch.job = await self._db.get_job(job_id)
            except Exception:  # the streams wait for the next read rather than end
                log.exception("could not read job %s for its watchers", job_id)
            else:
                watch.reads += 1
                done, watch.next_read = watch.next_read, asyncio.Event()
                done.set()
                if watch.job is None:
                    return
            await asyncio.sleep(self._interval)


class _Watch:
    """One watched job: the last read of it, and the streams waiting for the next."""

    def __init__(self) -> None:
        self.job: Job | None = None
        self.reads = 0
        self.next_read = asyncio.Event()
        self.watchers = 0
        self.task: asyncio.Task[None]
