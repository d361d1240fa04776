"""Jobs: creating them, finding them, and every change of their state."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import aiosqlite

from ...models import DeliveryState, ImageStatus, Job, JobStatus, OutboxEntry, Product, WorkKind
from ..columns import JOB_COLUMNS, TERMINAL
from ..interface import KeyTaken
from ..slices import Slicer
from .base import Connections, update_counters
from .rows import JOB_NUMBER, NOW, job_from, job_values, owned, stored


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
        try:
            return await self._create_job(job, batches, idempotency, owner)
        except sqlite3.IntegrityError as exc:
            if idempotency is None or "idempotency_key" not in str(exc):
                raise
            raise KeyTaken(idempotency[0]) from None

    async def _create_job(
        self,
        job: Job,
        batches: AsyncIterable[Sequence[Product]],
        idempotency: tuple[str, str] | None,
        owner: str | None,
    ) -> Job:
        key, digest = idempotency or (None, None)
        values = (*job_values(job), owner, key, digest)
        slicer = Slicer()
        products = images = 0
        async with self._transaction() as db:
            # The key goes in with the job, so a key already taken fails here, before any
            # of up to 100,000 products is inserted. One writer: the next number is free.
            numbered = await db.execute_fetchall(
                f"INSERT INTO jobs ({JOB_COLUMNS}, owner, idempotency_key, upload_digest, "
                f"number) VALUES ({', '.join('?' * len(values))}, "
                "(SELECT coalesce(max(number), 0) + 1 FROM jobs)) RETURNING number",
                values,
            )
            number: int = next(iter(numbered))[0]
            async for batch in batches:
                # The rows are made in the writer's thread as executemany reads them.
                await db.executemany(
                    "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        (job.id, seq, p.line, p.serial_number, p.product_name, json.dumps(p.cells))
                        for seq, p in enumerate(batch, products)
                    ),
                )
                maybe_seen = await asyncio.to_thread(slicer.maybe_seen, batch)
                stored = await _stored_slices(db, number, maybe_seen)
                await db.executemany(
                    "INSERT INTO images (job_number, product_seq, position, url, slice) "
                    "VALUES (?, ?, ?, ?, ?)",
                    slicer.image_rows(number, products, batch, maybe_seen, stored),
                )
                products += len(batch)
                images += sum(len(p.urls) for p in batch)
            await db.execute(
                "UPDATE jobs SET total_products = ?, total_images = ? WHERE id = ?",
                (products, images, job.id),
            )
            await db.executemany(
                "INSERT INTO work (job_id, kind, slice) VALUES (?, ?, ?)",
                ((job.id, WorkKind.SLICE, n) for n in range(slicer.slices)),
            )
        self.work_written.set()
        return replace(job, total_products=products, total_images=images)

    async def get_job(self, job_id: str, *, owner: str | None = None) -> Job | None:
        where, args = owned("id = ?", (job_id,), owner)
        rows = await self._reader.execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where}", args
        )
        return job_from(next(iter(rows))) if rows else None

    async def get_job_and_owner(self, job_id: str) -> tuple[Job, str | None] | None:
        return await self._job_and("owner", "id", job_id)

    async def list_jobs(
        self, offset: int, limit: int, *, owner: str | None = None
    ) -> tuple[list[Job], int]:
        where, args = owned("1", (), owner)
        rows = await self._reader.execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where} "
            "ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        total = await self._reader.execute_fetchall(
            f"SELECT COUNT(*) FROM jobs WHERE {where}", args
        )
        return [job_from(r) for r in rows], next(iter(total))[0]

    async def jobs_by_state(self) -> dict[str, int]:
        rows = await self._reader.execute_fetchall(
            "SELECT status, COUNT(*) FROM jobs GROUP BY status"
        )
        return {str(status): int(count) for status, count in rows}

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
        sql = (
            f"UPDATE jobs SET status = ?, message = ?, updated_at = {NOW}, "
            f"completed_at = {NOW} WHERE id = ? AND status NOT IN {TERMINAL}"
        )
        args: tuple[Any, ...] = (status, message, job_id)
        if only_from is not None:
            sql += " AND status = ?"
            args += (only_from,)
        async with self._transaction() as db:
            if (await db.execute(sql, args)).rowcount != 1:
                return False
            rows = await db.execute_fetchall(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
            )
            await db.execute("DELETE FROM work WHERE job_id = ?", (job_id,))
            entry = outbox(job_from(next(iter(rows))))
            if entry is not None:
                created = stored(entry.created_at)
                await db.execute(
                    "INSERT INTO webhook_deliveries (id, job_id, url, payload, state, "
                    "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (entry.id, job_id, entry.url, entry.payload, DeliveryState.PENDING,
                     created, created),
                )  # fmt: skip
        if entry is not None:
            self.outbox_written.set()
        return True

    async def job_by_idempotency_key(self, key: str) -> tuple[Job, str] | None:
        return await self._job_and("upload_digest", "idempotency_key", key)

    async def _job_and(self, column: str, key: str, value: str) -> tuple[Job, Any] | None:
        """The job whose `key` column is `value`, with its `column`."""
        rows = await self._reader.execute_fetchall(
            f"SELECT {JOB_COLUMNS}, {column} FROM jobs WHERE {key} = ?", (value,)
        )
        if not rows:
            return None
        row = next(iter(rows))
        return job_from(row[:-1]), row[-1]

    async def request_cancel(self, job_id: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE jobs SET cancel_requested = 1, updated_at = {NOW} "
                f"WHERE id = ? AND status NOT IN {TERMINAL}",
                (job_id,),
            )
            if cursor.rowcount != 1:
                return False
            await db.execute(
                f"DELETE FROM work WHERE job_id = ? AND kind != ? "
                f"AND (lease_until IS NULL OR lease_until < {NOW})",
                (job_id, WorkKind.CANCEL),
            )
            await db.execute(
                "INSERT OR IGNORE INTO work (job_id, kind) VALUES (?, ?)",
                (job_id, WorkKind.CANCEL),
            )
        self.work_written.set()
        return True

    async def retry_failed(self, job_id: str) -> int | None:
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                f"SELECT status IN {TERMINAL} FROM jobs WHERE id = ?", (job_id,)
            )
            if not rows or not next(iter(rows))[0]:
                return None
            cursor = await db.execute(
                "UPDATE images SET status = ?, output_name = NULL, error_code = NULL, "
                "error_message = NULL, bytes_in = NULL, bytes_out = NULL, width = NULL, "
                "height = NULL, kept_input = NULL, renditions = NULL "
                f"WHERE job_number = {JOB_NUMBER} AND status = ?",
                (ImageStatus.PENDING, job_id, ImageStatus.FAILED),
            )
            count = cursor.rowcount
            if count:
                await update_counters(db, job_id, {ImageStatus.FAILED: -count})
                await db.execute(
                    "UPDATE jobs SET status = ?, message = '', completed_at = NULL, "
                    "cancel_requested = 0 WHERE id = ?",
                    (JobStatus.PENDING, job_id),
                )
                await db.execute(
                    "INSERT OR IGNORE INTO work (job_id, kind, slice) SELECT DISTINCT ?, ?, "
                    f"slice FROM images WHERE job_number = {JOB_NUMBER} AND status = ?",
                    (job_id, WorkKind.SLICE, job_id, ImageStatus.PENDING),
                )
        if count:
            self.work_written.set()
        return count

    async def expired_jobs(self, cutoff: datetime, limit: int) -> list[Job]:
        rows = await self._reader.execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE completed_at < ? AND status IN {TERMINAL} "
            "ORDER BY completed_at LIMIT ?",
            (stored(cutoff), limit),
        )
        return [job_from(r) for r in rows]

    async def delete_job(self, job_id: str, cutoff: datetime) -> bool:
        async with self._transaction() as db:
            # products, work and the webhook outbox go with it: ON DELETE CASCADE
            deleted = await db.execute_fetchall(
                f"DELETE FROM jobs WHERE id = ? AND completed_at < ? AND status IN {TERMINAL} "
                "RETURNING number",
                (job_id, stored(cutoff)),
            )
            for (number,) in deleted:
                await db.execute("DELETE FROM images WHERE job_number = ?", (number,))
            return bool(deleted)

    @asynccontextmanager
    async def retention_turn(self) -> AsyncIterator[bool]:
        yield True  # one process owns the file: its turn always


async def _stored_slices(db: aiosqlite.Connection, number: int, urls: set[str]) -> dict[str, int]:
    """The slices of those `urls` that the job numbered `number` already holds."""
    if not urls:
        return {}
    # One index search per URL, and one row: a URL repeated on every product would
    # otherwise bring back each of its images stored so far, batch after batch.
    rows = await db.execute_fetchall(
        "SELECT value, (SELECT slice FROM images INDEXED BY images_by_url "
        "WHERE job_number = ? AND url = value LIMIT 1) FROM json_each(?)",
        (number, json.dumps(list(urls))),
    )
    return {str(url): int(slice_no) for url, slice_no in rows if slice_no is not None}
