"""Retention: jobs that ended more than IMGSVC_RETENTION_DAYS ago go, rows and files.

Only ended jobs are ever removed; the delete re-checks that in its own transaction, so a job
retried meanwhile stays. Rows go first, then files: a crash in between can leave files
without a job (never a job without its files).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from ..db import Database, url_pages
from ..models import Job
from ..storage import Storage, image_names

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 3600.0  # seconds between sweeps; the first runs at start
BATCH = 100


async def keep_clean(db: Database, storage: Storage, days: int) -> None:
    """Sweep now and then every SWEEP_INTERVAL, until cancelled."""
    while True:
        try:
            removed = await sweep(db, storage, days)
        except Exception:  # a failed sweep must not end the loop: the next one retries
            log.exception("retention sweep failed")
        else:
            if removed:
                log.info("retention: removed %d jobs older than %d days", removed, days)
        await asyncio.sleep(SWEEP_INTERVAL)


async def sweep(db: Database, storage: Storage, days: int) -> int:
    """Remove every job that ended more than `days` ago; how many were removed."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    removed = 0
    async with db.retention_turn() as mine:
        # A job that fails the delete's re-check no longer matches, so the loop ends.
        while mine and (jobs := await db.expired_jobs(cutoff, BATCH)):
            for job in jobs:
                names = await _file_names(db, job)
                if await db.delete_job(job.id, cutoff):
                    await storage.remove_images(names)
                    await storage.remove_results(job.id)
                    removed += 1
    return removed


async def _file_names(db: Database, job: Job) -> list[str]:
    # Every URL's name, not only recorded outputs: a file written just before a crash whose
    # outcome was never recorded goes too.
    return [name async for urls in url_pages(db, job.id) for name in image_names(job, urls)]
