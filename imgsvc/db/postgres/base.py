"""The connection pool every query goes through, and its transactions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from ...models import ImageStatus
from .rows import NOW

Pool = AsyncConnectionPool[AsyncConnection[TupleRow]]


class Connections:
    """A pool of autocommit connections: a read is one statement, a write one transaction."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        # Set after this process's commits that add work or make a delivery due, and by
        # the listener (listen.py) when another process announces one.
        self.work_written = asyncio.Event()
        self.outbox_written = asyncio.Event()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection[TupleRow]]:
        async with self._pool.connection() as db, db.transaction():
            yield db

    async def _rows(self, query: str, args: tuple[object, ...] = ()) -> list[TupleRow]:
        """Every row of one read, outside any transaction."""
        async with self._pool.connection() as db:
            return await (await db.execute(query, args)).fetchall()

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self._rows("SELECT 1")


async def update_counters(
    db: AsyncConnection[TupleRow],
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
            "WHERE job_id = %s AND status = %s)"
        )
        args: tuple[object, ...] = (job_id, str(ImageStatus.PENDING))
    else:
        processed, args = "processed_products + %s", (ended_products,)
    await db.execute(
        "UPDATE jobs SET processed_images = processed_images + %s, "
        "succeeded_images = succeeded_images + %s, failed_images = failed_images + %s, "
        "reused_images = reused_images + %s, "
        f"processed_products = {processed}, updated_at = {NOW} WHERE id = %s",
        (
            sum(changed.values()),
            changed.get(ImageStatus.SUCCEEDED, 0),
            changed.get(ImageStatus.FAILED, 0),
            reused,
            *args,
            job_id,
        ),
    )
