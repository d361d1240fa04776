"""The two connections every query goes through, and the writer's transactions."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite

from ...models import ImageStatus
from .rows import JOB_NUMBER, NOW


class Connections:
    """One writer, whose transactions are serialised by a lock, and one reader for the API,
    which WAL lets run while the writer commits, so polling never waits on work."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        # One process owns the file (the data folder's lock), so these in-process events
        # see every commit that adds work or makes a webhook delivery due.
        self.work_written = asyncio.Event()
        self.outbox_written = asyncio.Event()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
                yield self._writer
            except BaseException:
                # Also when cancelled while BEGIN ran in aiosqlite's thread: it ran all the
                # same, and a transaction left open would refuse every later BEGIN.
                with contextlib.suppress(sqlite3.OperationalError):  # BEGIN itself failed
                    await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self._reader.execute_fetchall("SELECT 1")


async def update_counters(
    db: aiosqlite.Connection,
    job_id: str,
    changed: dict[ImageStatus, int],
    reused: int = 0,
    ended_products: int | None = None,
) -> None:
    """Add a change of images to the job's counters. A product is processed when none of its
    images is pending: `ended_products` is how many the change ended, when the caller
    counted them; else the distinct products among the pending rows are counted through
    an index, which walks every pending image of the job."""
    if ended_products is None:
        processed = (
            "total_products - (SELECT COUNT(DISTINCT product_seq) FROM images "
            f"WHERE job_number = {JOB_NUMBER} AND status = ?)"
        )
        args: tuple[object, ...] = (job_id, ImageStatus.PENDING)
    else:
        processed, args = "processed_products + ?", (ended_products,)
    await db.execute(
        "UPDATE jobs SET processed_images = processed_images + ?, "
        "succeeded_images = succeeded_images + ?, failed_images = failed_images + ?, "
        "reused_images = reused_images + ?, "
        f"processed_products = {processed}, updated_at = {NOW} WHERE id = ?",
        (
            sum(changed.values()),
            changed.get(ImageStatus.SUCCEEDED, 0),
            changed.get(ImageStatus.FAILED, 0),
            reused,
            *args,
            job_id,
        ),
    )
