"""The two connections every query goes through, and the writer's transactions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite

from ..models import ImageStatus
from .rows import now


class Connections:
    """One writer, whose transactions are serialised by a lock, and one reader for the API,
    which WAL lets run while the writer commits, so polling never waits on work."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        # Set after a commit that made a webhook delivery due, so the sender wakes at once.
        self.outbox_written = asyncio.Event()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self._reader.execute_fetchall("SELECT 1")


async def update_counters(
    db: aiosqlite.Connection, job_id: str, changed: dict[ImageStatus, int]
) -> None:
    # A product is processed when none of its images is pending; counting the distinct
    # products among the pending rows walks an index and keeps the count exact when one
    # URL shared by many products ends.
    await db.execute(
        "UPDATE jobs SET processed_images = processed_images + ?, "
        "succeeded_images = succeeded_images + ?, failed_images = failed_images + ?, "
        "processed_products = total_products - (SELECT COUNT(DISTINCT product_seq) "
        "FROM images WHERE job_id = ? AND status = ?), updated_at = ? "
        "WHERE id = ?",
        (
            sum(changed.values()),
            changed.get(ImageStatus.SUCCEEDED, 0),
            changed.get(ImageStatus.FAILED, 0),
            job_id,
            ImageStatus.PENDING,
            now(),
            job_id,
        ),
    )
