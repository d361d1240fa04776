"""Every SQL statement of the service: schema, migrations and small async queries.

Two connections: one writer, whose transactions are serialised by a lock, and one reader
for the API, which WAL lets run while the writer commits, so polling never waits on work.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from .csvio import Product
from .models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    ImageRecord,
    ImageStatus,
    Job,
    JobOptions,
    JobStatus,
    OutboxEntry,
    PendingImage,
    ProductRecord,
)

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        completed_at TEXT,
        base_url TEXT NOT NULL,
        webhook_url TEXT,
        quality INTEGER NOT NULL,
        max_dimension INTEGER,
        format TEXT NOT NULL,
        header TEXT NOT NULL,
        total_products INTEGER NOT NULL,
        total_images INTEGER NOT NULL,
        processed_products INTEGER NOT NULL DEFAULT 0,
        processed_images INTEGER NOT NULL DEFAULT 0,
        succeeded_images INTEGER NOT NULL DEFAULT 0,
        failed_images INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_by_created ON jobs (created_at);
    CREATE INDEX jobs_by_status ON jobs (status);
    CREATE TABLE products (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        line INTEGER NOT NULL,
        serial_number TEXT NOT NULL,
        product_name TEXT NOT NULL,
        cells TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE images (
        job_id TEXT NOT NULL,
        product_seq INTEGER NOT NULL,
        position INTEGER NOT NULL,
        url TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        output_name TEXT,
        error_code TEXT,
        error_message TEXT,
        bytes_in INTEGER,
        bytes_out INTEGER,
        width INTEGER,
        height INTEGER,
        PRIMARY KEY (job_id, product_seq, position),
        FOREIGN KEY (job_id, product_seq) REFERENCES products (job_id, seq) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX images_by_url ON images (job_id, url);
    CREATE INDEX images_by_status ON images (job_id, status, product_seq);
    """,
    # The webhook outbox: one row per terminal event, written with the job's terminal state.
    """
    CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        round_start INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id);
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
    CREATE TABLE webhook_attempts (
        delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        at TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        status_code INTEGER,
        error_code TEXT,
        error_message TEXT,
        PRIMARY KEY (delivery_id, number)
    ) WITHOUT ROWID;
    """,
    # Who may see a job when API keys are on: a SHA-256 of the key that created it.
    """
    ALTER TABLE jobs ADD COLUMN owner TEXT;
    CREATE INDEX jobs_by_owner ON jobs (owner, created_at);
    """,
    # Lifecycle: a retried upload finds its job by key; a cancel is recorded before it is
    # carried out, so a crash halfway through is finished at the next start.
    """
    ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
    ALTER TABLE jobs ADD COLUMN upload_digest TEXT;
    ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_by_completed ON jobs (completed_at) WHERE completed_at IS NOT NULL;
    """,
)
WRITER_CACHE_KIB = 32 * 1024
TERMINAL = "('completed', 'failed', 'cancelled')"

JOB_COLUMNS = (
    "id, status, message, created_at, updated_at, completed_at, base_url, webhook_url, "
    "quality, max_dimension, format, header, total_products, total_images, "
    "processed_products, processed_images, succeeded_images, failed_images"
)
IMAGE_COLUMNS = (
    "url, status, output_name, error_code, error_message, bytes_in, bytes_out, width, height"
)
DELIVERY_COLUMNS = "id, job_id, url, payload, state, attempts, round_start, next_attempt_at"
ATTEMPT_COLUMNS = "number, at, duration_ms, status_code, error_code, error_message"


class KeyTaken(Exception):
    """An Idempotency-Key is already stored with another job."""


def now() -> str:
    """The current time as the API shows it: ISO 8601, UTC, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def in_seconds(seconds: float) -> str:
    """A time `seconds` from now, in the format of `now()` (so stored times compare as text)."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Database:
    """The service's one SQLite file."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        # Set after a commit that made a webhook delivery due, so the sender wakes at once.
        self.outbox_written = asyncio.Event()

    @classmethod
    async def open(cls, path: Path) -> Database:
        writer = await _connect(path)
        await writer.execute("PRAGMA journal_mode = WAL")
        await writer.execute("PRAGMA synchronous = FULL")
        # A 100,000-row upload builds three indexes in one transaction; with SQLite's 2 MiB
        # default cache it spills to the OS on every page (measured: 2.7 s to insert, 1.7 s
        # with 32 MiB).
        await writer.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        await _migrate(writer)
        reader = await _connect(path)
        await reader.execute("PRAGMA query_only = ON")
        return cls(writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

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

    # -- jobs ------------------------------------------------------------------------------

    async def create_job(
        self,
        job: Job,
        products: Sequence[Product],
        idempotency: tuple[str, str] | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        """Insert a job with all its products and images in one transaction.

        `idempotency` is (key, digest of the upload); a key already taken raises KeyTaken
        and nothing is inserted. `owner` is the hash of the API key that created it."""
        try:
            await self._create_job(job, products, idempotency, owner)
        except sqlite3.IntegrityError as exc:
            if idempotency is None or "idempotency_key" not in str(exc):
                raise
            raise KeyTaken(idempotency[0]) from None

    async def _create_job(
        self,
        job: Job,
        products: Sequence[Product],
        idempotency: tuple[str, str] | None,
        owner: str | None,
    ) -> None:
        async with self._transaction() as db:
            await db.execute(
                f"INSERT INTO jobs ({JOB_COLUMNS}, owner) VALUES ({', '.join('?' * 19)})",
                (*_job_values(job), owner),
            )
            await db.executemany(
                "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (job.id, seq, p.line, p.serial_number, p.product_name, json.dumps(p.cells))
                    for seq, p in enumerate(products)
                ),
            )
            await db.executemany(
                "INSERT INTO images (job_id, product_seq, position, url) VALUES (?, ?, ?, ?)",
                (
                    (job.id, seq, pos, url)
                    for seq, p in enumerate(products)
                    for pos, url in enumerate(p.urls)
                ),
            )
            if idempotency is not None:
                await db.execute(
                    "UPDATE jobs SET idempotency_key = ?, upload_digest = ? WHERE id = ?",
                    (*idempotency, job.id),
                )

    async def get_job(self, job_id: str, *, owner: str | None = None) -> Job | None:
        """A job by id; with `owner`, only if that owner created it."""
        where, args = _owned("id = ?", (job_id,), owner)
        rows = await self._reader.execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where}", args
        )
        return _job(next(iter(rows))) if rows else None

    async def list_jobs(
        self, offset: int, limit: int, *, owner: str | None = None
    ) -> tuple[list[Job], int]:
        """Jobs newest first (with `owner`, only theirs), and how many there are in all."""
        where, args = _owned("1", (), owner)
        rows = await self._reader.execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where} "
            "ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        total = await self._reader.execute_fetchall(
            f"SELECT COUNT(*) FROM jobs WHERE {where}", args
        )
        return [_job(r) for r in rows], next(iter(total))[0]

    async def unfinished_jobs(self) -> list[str]:
        """Ids of jobs not yet ended, oldest first, after putting running ones back to pending."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET status = ? WHERE status = ?",
                (JobStatus.PENDING, JobStatus.PROCESSING),
            )
            rows = await db.execute_fetchall(
                "SELECT id FROM jobs WHERE status = ? ORDER BY created_at, id",
                (JobStatus.PENDING,),
            )
        return [r[0] for r in rows]

    async def set_job_status(
        self, job_id: str, status: JobStatus, message: str, *, only_from: JobStatus | None = None
    ) -> bool:
        """Move a job to `status` (with `only_from`: only from that state); True if it moved.

        Terminal states go through `finish_job`, which writes the webhook with them.
        """
        if status.terminal:
            raise ValueError(f"a job turns {status} through finish_job, not set_job_status")
        sql = (
            "UPDATE jobs SET status = ?, message = ?, updated_at = ?, completed_at = NULL "
            "WHERE id = ?"
        )
        args: tuple[Any, ...] = (status, message, now(), job_id)
        if only_from is not None:
            sql += " AND status = ?"
            args += (only_from,)
        async with self._transaction() as db:
            cursor = await db.execute(sql, args)
            return cursor.rowcount == 1

    async def jobs_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (for metrics)."""
        rows = await self._reader.execute_fetchall(
            "SELECT status, COUNT(*) FROM jobs GROUP BY status"
        )
        return {str(status): int(count) for status, count in rows}

    # -- images ----------------------------------------------------------------------------

    async def pending_images(
        self, job_id: str, after: tuple[int, int], limit: int
    ) -> list[PendingImage]:
        """The next page of a job's pending images in input order, after (product_seq, position)."""
        rows = await self._reader.execute_fetchall(
            "SELECT product_seq, position, url FROM images WHERE job_id = ? AND status = ? "
            "AND (product_seq, position) > (?, ?) ORDER BY product_seq, position LIMIT ?",
            (job_id, ImageStatus.PENDING, *after, limit),
        )
        return [PendingImage(*r) for r in rows]

    async def record_images(self, job_id: str, records: Iterable[ImageRecord]) -> None:
        """Store how URLs ended, for every pending occurrence, and update the job's counters."""
        changed = {ImageStatus.SUCCEEDED: 0, ImageStatus.FAILED: 0, ImageStatus.CANCELLED: 0}
        by_status: dict[ImageStatus, list[tuple[Any, ...]]] = {s: [] for s in changed}
        for r in records:
            by_status[r.status].append(
                (
                    r.status,
                    r.output_name,
                    r.error_code,
                    r.error_message,
                    r.bytes_in,
                    r.bytes_out,
                    r.width,
                    r.height,
                    job_id,
                    r.url,
                    ImageStatus.PENDING,
                )
            )
        async with self._transaction() as db:
            for status, values in by_status.items():
                if values:
                    cursor = await db.executemany(
                        "UPDATE images SET status = ?, output_name = ?, error_code = ?, "
                        "error_message = ?, bytes_in = ?, bytes_out = ?, width = ?, height = ? "
                        "WHERE job_id = ? AND url = ? AND status = ?",
                        values,
                    )
                    changed[status] = cursor.rowcount
            await self._update_counters(db, job_id, changed)

    async def cancel_pending_images(self, job_id: str) -> None:
        """End every pending image of a job as cancelled."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE images SET status = ?, error_code = 'cancelled', "
                "error_message = 'the job was cancelled before this image was produced' "
                "WHERE job_id = ? AND status = ?",
                (ImageStatus.CANCELLED, job_id, ImageStatus.PENDING),
            )
            cancelled = {ImageStatus.CANCELLED: cursor.rowcount}
            await self._update_counters(db, job_id, cancelled)

    @staticmethod
    async def _update_counters(
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

    # -- products --------------------------------------------------------------------------

    async def products(self, job_id: str, offset: int, limit: int) -> list[ProductRecord]:
        """A page of a job's products in input order, each with its images."""
        products = list(
            await self._reader.execute_fetchall(
                "SELECT seq, line, serial_number, product_name, cells FROM products "
                "WHERE job_id = ? AND seq >= ? ORDER BY seq LIMIT ?",
                (job_id, offset, limit),
            )
        )
        if not products:
            return []
        first, last = products[0][0], products[-1][0]
        images = await self._reader.execute_fetchall(
            f"SELECT product_seq, {IMAGE_COLUMNS} FROM images WHERE job_id = ? "
            "AND product_seq BETWEEN ? AND ? ORDER BY product_seq, position",
            (job_id, first, last),
        )
        by_product: dict[int, list[ImageRecord]] = {}
        for row in images:
            by_product.setdefault(row[0], []).append(_image(row[1:]))
        return [
            ProductRecord(
                seq, line, serial, name, tuple(json.loads(cells)), tuple(by_product.get(seq, ()))
            )
            for seq, line, serial, name, cells in products
        ]

    # -- the end of a job, and its webhook outbox -------------------------------------------

    async def finish_job(
        self,
        job_id: str,
        status: JobStatus,
        message: str,
        outbox: Callable[[Job], OutboxEntry | None],
        *,
        only_from: JobStatus | None = None,
    ) -> bool:
        """Move a job to a terminal `status` and write its webhook in the same transaction.

        `outbox` gets the job as it now stands and returns the webhook message to send (None
        when the job has no webhook URL); pass `webhooks.outbox_entry`. The job moves only
        if it has not ended yet (with `only_from`: only from that state). True if it moved.
        """
        if not status.terminal:
            raise ValueError(f"{status} is not a terminal state")
        stamp = now()
        sql = (
            "UPDATE jobs SET status = ?, message = ?, updated_at = ?, completed_at = ? "
            f"WHERE id = ? AND status NOT IN {TERMINAL}"
        )
        args: tuple[Any, ...] = (status, message, stamp, stamp, job_id)
        if only_from is not None:
            sql += " AND status = ?"
            args += (only_from,)
        async with self._transaction() as db:
            if (await db.execute(sql, args)).rowcount != 1:
                return False
            rows = await db.execute_fetchall(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
            )
            entry = outbox(_job(next(iter(rows))))
            if entry is not None:
                await db.execute(
                    "INSERT INTO webhook_deliveries (id, job_id, url, payload, state, "
                    "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (entry.id, job_id, entry.url, entry.payload, DeliveryState.PENDING,
                     entry.created_at, entry.created_at),
                )  # fmt: skip
        if entry is not None:
            self.outbox_written.set()
        return True

    async def due_deliveries(self, limit: int) -> list[Delivery]:
        """Pending webhook deliveries whose next attempt is due, the longest waiting first."""
        rows = await self._reader.execute_fetchall(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE state = ? "
            "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (DeliveryState.PENDING, now(), limit),
        )
        return [_delivery(r) for r in rows]

    async def next_delivery_at(self) -> str | None:
        """When the earliest pending webhook delivery is due, if there is one."""
        rows = await self._reader.execute_fetchall(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = ?",
            (DeliveryState.PENDING,),
        )
        found: str | None = next(iter(rows))[0]
        return found

    async def record_attempt(
        self,
        delivery_id: str,
        attempt: DeliveryAttempt,
        state: DeliveryState,
        next_attempt_at: str | None,
    ) -> None:
        """Log one attempt and set where the delivery stands after it."""
        async with self._transaction() as db:
            await db.execute(
                f"INSERT INTO webhook_attempts (delivery_id, {ATTEMPT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (delivery_id, attempt.number, attempt.at, attempt.duration_ms,
                 attempt.status_code, attempt.error_code, attempt.error_message),
            )  # fmt: skip
            await db.execute(
                "UPDATE webhook_deliveries SET attempts = ?, state = ?, next_attempt_at = ? "
                "WHERE id = ?",
                (attempt.number, state, next_attempt_at, delivery_id),
            )

    async def latest_delivery(self, job_id: str) -> tuple[Delivery, list[DeliveryAttempt]] | None:
        """A job's most recent webhook delivery with every attempt, oldest first."""
        rows = await self._reader.execute_fetchall(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE job_id = ? "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (job_id,),
        )
        if not rows:
            return None
        delivery = _delivery(next(iter(rows)))
        attempts = await self._reader.execute_fetchall(
            f"SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE delivery_id = ? ORDER BY number",
            (delivery.id,),
        )
        return delivery, [DeliveryAttempt(*a) for a in attempts]

    async def redeliver(self, delivery_id: str) -> None:
        """Make a delivery due now with a fresh round of retries (its id stays the same)."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE webhook_deliveries SET state = ?, next_attempt_at = ?, "
                "round_start = attempts WHERE id = ?",
                (DeliveryState.PENDING, now(), delivery_id),
            )
        self.outbox_written.set()

    # -- lifecycle: idempotency, cancel, retry, failure, retention ---------------------------

    async def job_by_idempotency_key(self, key: str) -> tuple[Job, str] | None:
        """The job an upload with this Idempotency-Key created, and that upload's digest."""
        rows = await self._reader.execute_fetchall(
            f"SELECT {JOB_COLUMNS}, upload_digest FROM jobs WHERE idempotency_key = ?", (key,)
        )
        if not rows:
            return None
        row = next(iter(rows))
        return _job(row[:-1]), row[-1]

    async def request_cancel(self, job_id: str) -> bool:
        """Record that a job is to be cancelled; False if it has already ended."""
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE jobs SET cancel_requested = 1, updated_at = ? "
                f"WHERE id = ? AND status NOT IN {TERMINAL}",
                (now(), job_id),
            )
            return cursor.rowcount == 1

    async def cancel_requested(self, job_id: str) -> bool:
        rows = await self._reader.execute_fetchall(
            "SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)
        )
        return bool(rows) and bool(next(iter(rows))[0])

    async def fail_pending_images(self, job_id: str, code: str, message: str) -> int:
        """End every pending image of a job as failed with `code`; how many there were."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE images SET status = ?, error_code = ?, error_message = ? "
                "WHERE job_id = ? AND status = ?",
                (ImageStatus.FAILED, code, message, job_id, ImageStatus.PENDING),
            )
            await self._update_counters(db, job_id, {ImageStatus.FAILED: cursor.rowcount})
            return cursor.rowcount

    async def retry_failed(self, job_id: str) -> int | None:
        """Put an ended job's failed images back to pending and the job with them.

        None if the job has not ended; otherwise how many images were re-queued (0: nothing
        changed)."""
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                f"SELECT status IN {TERMINAL} FROM jobs WHERE id = ?", (job_id,)
            )
            if not rows or not next(iter(rows))[0]:
                return None
            cursor = await db.execute(
                "UPDATE images SET status = ?, output_name = NULL, error_code = NULL, "
                "error_message = NULL, bytes_in = NULL, bytes_out = NULL, width = NULL, "
                "height = NULL WHERE job_id = ? AND status = ?",
                (ImageStatus.PENDING, job_id, ImageStatus.FAILED),
            )
            count = cursor.rowcount
            if count:
                await self._update_counters(db, job_id, {ImageStatus.FAILED: -count})
                await db.execute(
                    "UPDATE jobs SET status = ?, message = '', completed_at = NULL, "
                    "cancel_requested = 0 WHERE id = ?",
                    (JobStatus.PENDING, job_id),
                )
            return count

    async def job_urls(
        self, job_id: str, after: str, limit: int, status: ImageStatus | None = None
    ) -> list[str]:
        """A page of a job's distinct URLs (with `status` only) in order, after `after`."""
        sql = "SELECT DISTINCT url FROM images WHERE job_id = ? AND url > ?"
        args: tuple[Any, ...] = (job_id, after)
        if status is not None:
            sql += " AND status = ?"
            args += (status,)
        rows = await self._reader.execute_fetchall(f"{sql} ORDER BY url LIMIT ?", (*args, limit))
        return [r[0] for r in rows]

    async def expired_jobs(self, cutoff: str, limit: int) -> list[Job]:
        """Jobs that ended before `cutoff` (an ISO time), oldest first."""
        rows = await self._reader.execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE completed_at < ? AND status IN {TERMINAL} "
            "ORDER BY completed_at LIMIT ?",
            (cutoff, limit),
        )
        return [_job(r) for r in rows]

    async def delete_job(self, job_id: str, cutoff: str) -> bool:
        """Delete an ended job older than `cutoff` with its products and images."""
        async with self._transaction() as db:
            # products and images go with it: ON DELETE CASCADE
            cursor = await db.execute(
                f"DELETE FROM jobs WHERE id = ? AND completed_at < ? AND status IN {TERMINAL}",
                (job_id, cutoff),
            )
            return cursor.rowcount == 1


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None, timeout=30)
    await db.execute("PRAGMA busy_timeout = 30000")
    await db.execute("PRAGMA foreign_keys = ON")
    return db


async def _migrate(db: aiosqlite.Connection) -> None:
    """Apply the migrations this file has not seen yet, each in its own transaction."""
    rows = await db.execute_fetchall("PRAGMA user_version")
    version = next(iter(rows))[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        statements = [s.strip() for s in script.split(";") if s.strip()]
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number}")
        except sqlite3.Error:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")


def _owned(where: str, args: tuple[Any, ...], owner: str | None) -> tuple[str, tuple[Any, ...]]:
    """`where` narrowed to one owner's jobs; None (API keys off) narrows nothing."""
    if owner is None:
        return where, args
    return f"{where} AND owner = ?", (*args, owner)


def _job_values(job: Job) -> tuple[Any, ...]:
    o = job.options
    return (
        job.id, job.status, job.message, job.created_at, job.updated_at, job.completed_at,
        job.base_url, job.webhook_url, o.quality, o.max_dimension, o.format,
        json.dumps(job.header), job.total_products, job.total_images, job.processed_products,
        job.processed_images, job.succeeded_images, job.failed_images,
    )  # fmt: skip


def _job(row: Any) -> Job:
    (id_, status, message, created, updated, completed, base_url, webhook_url, quality,
     max_dimension, fmt, header, *counters) = row  # fmt: skip
    return Job(
        id_, JobStatus(status), message, created, updated, completed, base_url, webhook_url,
        JobOptions(quality, max_dimension, fmt), tuple(json.loads(header)), *counters,
    )  # fmt: skip


def _delivery(row: Any) -> Delivery:
    id_, job_id, url, payload, state, *rest = row
    return Delivery(id_, job_id, url, payload, DeliveryState(state), *rest)


def _image(row: Any) -> ImageRecord:
    url, status, *rest = row
    return ImageRecord(url, ImageStatus(status), *rest)
