"""Jobs: creating them, finding them, and every change of their state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, errors
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from ...models import DeliveryState, ImageStatus, Job, JobStatus, OutboxEntry, Product, WorkKind
from ..columns import JOB_COLUMNS, TERMINAL
from ..interface import KeyTaken
from ..slices import Slicer
from .base import Connections, update_counters
from .listen import OUTBOX, WORK, announce
from .rows import NOW, job_from, job_values, owned

IDEMPOTENCY_INDEX = "jobs_by_idempotency_key"
RETENTION_LOCK = 0x72657465  # "rete": the advisory lock one sweeping process holds


class JobQueries(Connections):
    """The queries on jobs: creating, finding, and moving them from state to state."""

    async def create_job(
        self,
        job: Job,
        batches: AsyncIterable[Sequence[Product]],
        idempotency: tuple[str, str] | None = None,
        *,
        owner: str | None = None,
    ) -> Job:
        key, digest = idempotency or (None, None)
        values = (*job_values(job), owner, key, digest)
        try:
            async with self._transaction() as db:
                # The key goes in with the job, so a key already taken fails here, before
                # any of up to 100,000 products is sent.
                await db.execute(
                    f"INSERT INTO jobs ({JOB_COLUMNS}, owner, idempotency_key, upload_digest) "
                    f"VALUES ({', '.join(['%s'] * len(values))})",
                    values,
                )
                products, images = await _copy_rows(db, job.id, batches)
                await announce(db, WORK)
        except errors.UniqueViolation as exc:
            if key is None or exc.diag.constraint_name != IDEMPOTENCY_INDEX:
                raise
            raise KeyTaken(key) from None
        self.work_written.set()
        return replace(job, total_products=products, total_images=images)

    async def get_job(self, job_id: str, *, owner: str | None = None) -> Job | None:
        where, args = owned("id = %s", (job_id,), owner)
        rows = await self._rows(f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where}", args)
        return job_from(rows[0]) if rows else None

    async def get_job_and_owner(self, job_id: str) -> tuple[Job, str | None] | None:
        return await self._job_and("owner", "id", job_id)

    async def list_jobs(
        self, offset: int, limit: int, *, owner: str | None = None
    ) -> tuple[list[Job], int]:
        where, args = owned("true", (), owner)
        rows = await self._rows(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where} "
            "ORDER BY created_at DESC, id LIMIT %s OFFSET %s",
            (*args, limit, offset),
        )
        total = await self._rows(f"SELECT COUNT(*) FROM jobs WHERE {where}", args)
        return [job_from(r) for r in rows], int(total[0][0])

    async def jobs_by_state(self) -> dict[str, int]:
        rows = await self._rows("SELECT status, COUNT(*) FROM jobs GROUP BY status")
        return {str(status): int(count) for status, count in rows}

    async def job_by_idempotency_key(self, key: str) -> tuple[Job, str] | None:
        return await self._job_and("upload_digest", "idempotency_key", key)

    async def _job_and(self, column: str, key: str, value: str) -> tuple[Job, Any] | None:
        """The job whose `key` column is `value`, with its `column`."""
        rows = await self._rows(
            f"SELECT {JOB_COLUMNS}, {column} FROM jobs WHERE {key} = %s", (value,)
        )
        if not rows:
            return None
        return job_from(rows[0][:-1]), rows[0][-1]

    async def finish_job(
        self,
        job_id: str,
        status: JobStatus,
        message: str,
        outbox: Callable[[Job], OutboxEntry | None],
        *,
        only_from: JobStatus | None = None,
    ) -> bool:
        if not status.terminal:
            raise ValueError(f"{status} is not a terminal state")
        query = (
            f"UPDATE jobs SET status = %s, message = %s, updated_at = {NOW}, "
            f"completed_at = {NOW} WHERE id = %s AND status NOT IN {TERMINAL}"
        )
        args: tuple[Any, ...] = (str(status), message, job_id)
        if only_from is not None:
            query += " AND status = %s"
            args += (str(only_from),)
        async with self._transaction() as db:
            cursor = await db.execute(f"{query} RETURNING {JOB_COLUMNS}", args)
            row = await cursor.fetchone()
            if row is None:
                return False
            await db.execute("DELETE FROM work WHERE job_id = %s", (job_id,))
            entry = outbox(job_from(row))
            if entry is not None:
                await db.execute(
                    "INSERT INTO webhook_deliveries (id, job_id, url, payload, state, "
                    "next_attempt_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (entry.id, job_id, entry.url, entry.payload, str(DeliveryState.PENDING),
                     entry.created_at, entry.created_at),
                )  # fmt: skip
                await announce(db, OUTBOX)
        if entry is not None:
            self.outbox_written.set()
        return True

    async def request_cancel(self, job_id: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE jobs SET cancel_requested = true, updated_at = {NOW} "
                f"WHERE id = %s AND status NOT IN {TERMINAL}",
                (job_id,),
            )
            if cursor.rowcount != 1:
                return False
            await db.execute(
                f"DELETE FROM work WHERE job_id = %s AND kind != %s "
                f"AND (lease_until IS NULL OR lease_until < {NOW})",
                (job_id, str(WorkKind.CANCEL)),
            )
            await db.execute(
                "INSERT INTO work (job_id, kind) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (job_id, str(WorkKind.CANCEL)),
            )
            await announce(db, WORK)
        self.work_written.set()
        return True

    async def retry_failed(self, job_id: str) -> int | None:
        async with self._transaction() as db:
            cursor = await db.execute(
                f"SELECT status IN {TERMINAL} FROM jobs WHERE id = %s FOR UPDATE", (job_id,)
            )
            ended = await cursor.fetchone()
            if ended is None or not ended[0]:
                return None
            cursor = await db.execute(
                "UPDATE images SET status = %s, output_name = NULL, error_code = NULL, "
                "error_message = NULL, bytes_in = NULL, bytes_out = NULL, width = NULL, "
                "height = NULL, kept_input = NULL, renditions = NULL "
                "WHERE job_id = %s AND status = %s",
                (str(ImageStatus.PENDING), job_id, str(ImageStatus.FAILED)),
            )
            count = cursor.rowcount
            if count:
                await update_counters(db, job_id, {ImageStatus.FAILED: -count})
                await db.execute(
                    "UPDATE jobs SET status = %s, message = '', completed_at = NULL, "
                    "cancel_requested = false WHERE id = %s",
                    (str(JobStatus.PENDING), job_id),
                )
                await db.execute(
                    "INSERT INTO work (job_id, kind, slice) SELECT DISTINCT job_id, %s, slice "
                    "FROM images WHERE job_id = %s AND status = %s ON CONFLICT DO NOTHING",
                    (str(WorkKind.SLICE), job_id, str(ImageStatus.PENDING)),
                )
                await announce(db, WORK)
        if count:
            self.work_written.set()
        return count

    async def expired_jobs(self, cutoff: datetime, limit: int) -> list[Job]:
        rows = await self._rows(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE completed_at < %s "
            f"AND status IN {TERMINAL} ORDER BY completed_at LIMIT %s",
            (cutoff, limit),
        )
        return [job_from(r) for r in rows]

    async def delete_job(self, job_id: str, cutoff: datetime) -> bool:
        async with self._transaction() as db:
            # products, work and the webhook outbox go with it (ON DELETE CASCADE); images
            # have no foreign key (schema.py).
            cursor = await db.execute(
                f"DELETE FROM jobs WHERE id = %s AND completed_at < %s AND status IN {TERMINAL}",
                (job_id, cutoff),
            )
            if cursor.rowcount != 1:
                return False
            await db.execute("DELETE FROM images WHERE job_id = %s", (job_id,))
        return True

    @asynccontextmanager
    async def retention_turn(self) -> AsyncIterator[bool]:
        # A session lock, released on the connection that took it before the pool has it
        # back: a lock left on a pooled connection would outlive the sweep.
        async with self._pool.connection() as db:
            cursor = await db.execute("SELECT pg_try_advisory_lock(%s)", (RETENTION_LOCK,))
            row = await cursor.fetchone()
            mine = bool(row and row[0])
            try:
                yield mine
            finally:
                if mine:
                    await db.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK,))


async def _copy_rows(
    db: AsyncConnection[TupleRow], job_id: str, batches: AsyncIterable[Sequence[Product]]
) -> tuple[int, int]:
    """A job's products, images and slices, sent with COPY (three times quicker than
    INSERTs, a fifteenth of the client's CPU) a batch at a time; the job's totals are set
    and returned."""
    cursor = db.cursor()
    slicer = Slicer()
    products = images = 0
    async for batch in batches:
        async with cursor.copy(
            "COPY products (job_id, seq, line, serial_number, product_name, cells) FROM STDIN"
        ) as copy:
            for seq, p in enumerate(batch, products):
                await copy.write_row(
                    (job_id, seq, p.line, p.serial_number, p.product_name, Jsonb(list(p.cells)))
                )
        maybe_seen = await asyncio.to_thread(slicer.maybe_seen, batch)
        stored = await _stored_slices(db, job_id, maybe_seen)
        async with cursor.copy(
            "COPY images (job_id, product_seq, position, url, slice) FROM STDIN"
        ) as copy:
            for row in slicer.image_rows(job_id, products, batch, maybe_seen, stored):
                await copy.write_row(row)
        products += len(batch)
        images += sum(len(p.urls) for p in batch)
    await db.execute(
        "UPDATE jobs SET total_products = %s, total_images = %s WHERE id = %s",
        (products, images, job_id),
    )
    await db.execute(
        "INSERT INTO work (job_id, kind, slice) SELECT %s, %s, n FROM generate_series(0, %s) n",
        (job_id, str(WorkKind.SLICE), slicer.slices - 1),
    )
    return products, images


async def _stored_slices(
    db: AsyncConnection[TupleRow], job_id: str, urls: set[str]
) -> dict[str, int]:
    """The slices of those `urls` that the job already holds."""
    if not urls:
        return {}
    # One index search per URL, whatever the planner thinks of the job's size.
    cursor = await db.execute(
        "SELECT u.url, s.slice FROM unnest(%s::text[]) AS u (url) CROSS JOIN LATERAL "
        "(SELECT slice FROM images WHERE job_id = %s AND url = u.url LIMIT 1) AS s",
        (list(urls), job_id),
    )
    return dict(await cursor.fetchall())
