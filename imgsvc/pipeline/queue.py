"""The job engine: work claimed from the database under leases, run by a bounded pool.

When a job is stored its distinct URLs are cut into slices; each slice, a job's finishing
and its cancelling are work items (db/slices.py). A process claims items while it has free
workers, renews the leases of what it holds twice a second (storing the URLs in flight, so
any process can show them), and completes or releases each item. A process that dies
stops renewing: once its leases run out anyone may claim its items, and a slice redone
produces only its URLs still pending, under the same output names, so nothing is produced
twice. A cancel is database state that holders see at their next renewal. A slice itself
is produced by produce.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging

from .. import logs
from ..models import WorkItem, WorkKind
from . import finish
from .produce import Pipeline, SliceRun

log = logging.getLogger(__name__)

RENEW_INTERVAL = 0.5  # seconds between lease renewals: how soon a cancel is seen
POLL_INTERVAL = 1.0  # seconds between looks for work nobody announced (leases run out)
ERROR_PAUSE = 5.0  # seconds before claiming again after the database failed
ENDINGS = (WorkKind.FINISH, WorkKind.CANCEL)
ENDING_WORKERS = 4  # jobs ended at once, beside the slices: short, and someone waits


class JobRunner:
    """Claims work items while it has free workers and runs each to its end."""

    def __init__(self, pipeline: Pipeline, workers: int, owner: str, lease: float) -> None:
        self._p = pipeline
        self._db = pipeline.db
        self._workers = workers
        self._owner = owner  # this process, as leases name it
        self._lease = lease
        self._running: dict[int, _Running] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        self._loops = [asyncio.create_task(self._claim()), asyncio.create_task(self._renew())]

    async def drain(self, grace: float) -> None:
        """Claim nothing new; give the images in flight `grace` seconds to finish."""
        self._stopping = True
        self._db.work_written.set()
        for running in self._running.values():
            running.stop()
        if self._running:
            await asyncio.wait([r.task for r in self._running.values()], timeout=grace)

    async def stop(self) -> None:
        """Stop everything; what is unfinished goes back to the database for anyone."""
        self._stopping = True
        held = list(self._running)
        tasks = [*self._loops, *(r.task for r in self._running.values())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loops = []
        if held:
            await self._db.release_work(self._owner, held)

    def wake(self) -> None:
        """Look for work now (a job was stored or re-queued by this process)."""
        self._db.work_written.set()

    @property
    def alive(self) -> bool:
        return bool(self._loops) and not any(t.done() for t in self._loops)

    async def cancel(self, job_id: str) -> bool:
        """Ask for a job to be cancelled; False if it had ended. Its slices running here
        stop at once; the cancel itself is work, claimed like any other."""
        if not await self._db.request_cancel(job_id):
            return False
        await asyncio.gather(
            *(self._abandon(r) for r in list(self._running.values()) if r.item.job_id == job_id)
        )
        return True

    async def _claim(self) -> None:
        wake = self._db.work_written
        while not self._stopping:
            wake.clear()
            try:
                claimed = await self._claim_free()
            except Exception:
                log.exception("could not claim work")
                await asyncio.sleep(ERROR_PAUSE)
                continue
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_INTERVAL):
                        await wake.wait()

    async def _claim_free(self) -> bool:
        """Claim what the free workers can take; whether anything was claimed."""
        claimed = False
        for kinds, workers in ((ENDINGS, ENDING_WORKERS), ((WorkKind.SLICE,), self._workers)):
            free = workers - sum(r.item.kind in kinds for r in self._running.values())
            if free > 0:
                for item in await self._db.claim_work(self._owner, self._lease, kinds, free):
                    self._start(item)
                    claimed = True
        return claimed

    def _start(self, item: WorkItem) -> None:
        running = _Running(item)
        running.task = asyncio.create_task(self._run(running), context=_job_context(item))
        self._running[item.id] = running

    async def _run(self, running: _Running) -> None:
        item = running.item
        try:
            if await self._perform(running):
                if not await self._db.complete_work(self._owner, item):
                    log.error("work %s on job %s ended with images pending", item, item.job_id)
                    await self._db.release_work(self._owner, [item.id])
            elif not running.abandoned:
                await self._db.release_work(self._owner, [item.id])
        except Exception:
            log.exception("work on job %s could not be recorded", item.job_id)
        finally:
            del self._running[item.id]
            self._db.work_written.set()  # a worker is free

    async def _perform(self, running: _Running) -> bool:
        """Do one item; True when it is done for good, False when it stopped halfway."""
        item, p = running.item, self._p
        try:
            if item.kind is WorkKind.FINISH:
                await finish.finished(p.db, p.storage, item.job_id)
            elif item.kind is WorkKind.CANCEL:
                await finish.cancelled(p.db, p.storage, item.job_id)
            else:
                return await self._slice(running)
        except Exception as exc:
            return await finish.failed(p.db, p.storage, item.job_id, exc)
        return True

    async def _slice(self, running: _Running) -> bool:
        job = await self._db.get_job(running.item.job_id)
        if job is None or job.status.terminal:
            return True
        assert running.item.slice is not None
        running.run = SliceRun(self._p, job, running.item.slice)
        if self._stopping:  # a stop began while the job was read: drain() missed this run
            running.run.stop()
        await running.run.process()
        return not running.run.stopped

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_INTERVAL)
            if not self._running:
                continue
            in_flight = {i: r.in_flight for i, r in self._running.items() if not r.abandoned}
            try:
                held = await self._db.renew_work(self._owner, self._lease, in_flight)
            except Exception:
                log.exception("could not renew leases")
                continue
            lost = [self._running[i] for i in in_flight if i not in held and i in self._running]
            await asyncio.gather(*(self._abandon(r) for r in lost))

    async def _abandon(self, running: _Running) -> None:
        """Stop an item whose job is being cancelled or whose lease was lost, and give it
        back once its images in flight have stopped (so no file appears after that)."""
        if running.abandoned:
            return
        running.abandoned = True
        running.task.cancel()
        await asyncio.wait({running.task})
        await self._db.release_work(self._owner, [running.item.id])


class _Running:
    """A work item this process holds, and its slice run once it has one."""

    def __init__(self, item: WorkItem) -> None:
        self.item = item
        self.task: asyncio.Task[None]
        self.run: SliceRun | None = None
        self.abandoned = False

    @property
    def in_flight(self) -> frozenset[str]:
        return frozenset(self.run.in_flight) if self.run else frozenset()

    def stop(self) -> None:
        if self.run is not None:
            self.run.stop()


def _job_context(item: WorkItem) -> contextvars.Context:
    """A copy of the current context in which every log line carries the item's job id."""
    context = contextvars.copy_context()
    context.run(logs.JOB_ID.set, item.job_id)
    return context
