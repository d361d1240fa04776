"""Images and products: a job's pending work, outcomes, and pages of results."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

from ...models import EarlierOutput, ImageRecord, ImageStatus, ProductRecord, WorkKind
from ..columns import EARLIER_COLUMNS, IMAGE_COLUMNS, remember_statement
from .base import Connections, update_counters
from .rows import JOB_NUMBER, NOW, earlier_from, earlier_values, image_from, renditions_value

# The owner of a job's earlier outputs: '' stands for none (API keys off).
JOB_OWNER = "(SELECT coalesce(owner, '') FROM jobs WHERE id = ?)"
REMEMBER = remember_statement(JOB_OWNER, "?")


class ImageQueries(Connections):
    """The queries on images and products: pending work, outcomes, pages of results."""

    async def slice_urls(self, job_id: str, slice_no: int, after: str, limit: int) -> list[str]:
        rows = await self._reader.execute_fetchall(
            f"SELECT DISTINCT url FROM images WHERE job_number = {JOB_NUMBER} AND slice = ? "
            "AND status = ? "
            "AND url > ? ORDER BY url LIMIT ?",
            (job_id, slice_no, ImageStatus.PENDING, after, limit),
        )
        return [r[0] for r in rows]

    async def record_images(
        self,
        job_id: str,
        records: Iterable[ImageRecord],
        *,
        options_key: str = "",
        remember: Iterable[EarlierOutput] = (),
    ) -> None:
        changed = {ImageStatus.SUCCEEDED: 0, ImageStatus.FAILED: 0, ImageStatus.CANCELLED: 0}
        reused = 0
        urls: set[str] = set()
        # Batches by status and reuse, so each batch's row count feeds its counter.
        batches: dict[tuple[ImageStatus, bool], list[tuple[Any, ...]]] = {}
        for r in records:
            urls.add(r.url)
            batches.setdefault((r.status, r.reused), []).append(
                (
                    r.status,
                    r.output_name,
                    r.error_code,
                    r.error_message,
                    r.bytes_in,
                    r.bytes_out,
                    r.width,
                    r.height,
                    None if r.kept_input is None else int(r.kept_input),
                    int(r.reused),
                    renditions_value(r),
                    job_id,
                    r.url,
                    ImageStatus.PENDING,
                )
            )
        async with self._transaction() as db:
            # The products these outcomes touch that still wait for an image: those left
            # with none pending afterwards are the ones this batch ends.
            touched = await db.execute_fetchall(
                "SELECT DISTINCT product_seq FROM images INDEXED BY images_by_url "
                f"WHERE job_number = {JOB_NUMBER} AND url IN (SELECT value FROM json_each(?)) "
                "AND status = ?",
                (job_id, json.dumps(list(urls)), ImageStatus.PENDING),
            )
            for (status, reuse), values in batches.items():
                # Without statistics SQLite picks the primary key's job_id prefix here,
                # which visits every image of the job for each URL: 12 ms a URL in a
                # job of 100,000 images (20 minutes in all, the write lock held 6 s a
                # batch) against 0.012 ms through images_by_url.
                cursor = await db.executemany(
                    "UPDATE images INDEXED BY images_by_url "
                    "SET status = ?, output_name = ?, error_code = ?, "
                    "error_message = ?, bytes_in = ?, bytes_out = ?, width = ?, height = ?, "
                    "kept_input = ?, reused = ?, renditions = ? "
                    f"WHERE job_number = {JOB_NUMBER} AND url = ? AND status = ?",
                    values,
                )
                changed[status] += cursor.rowcount
                reused += cursor.rowcount if reuse else 0
            ended = await db.execute_fetchall(
                "SELECT COUNT(*) FROM json_each(?) AS touched WHERE NOT EXISTS (SELECT 1 "
                f"FROM images WHERE job_number = {JOB_NUMBER} AND product_seq = touched.value "
                "AND status = ?)",
                (json.dumps([seq for (seq,) in touched]), job_id, ImageStatus.PENDING),
            )
            await update_counters(db, job_id, changed, reused, next(iter(ended))[0])
            remembered = [(job_id, options_key, job_id, *earlier_values(o)) for o in remember]
            if remembered:
                await db.executemany(REMEMBER, remembered)

    async def earlier_outputs(
        self, job_id: str, options_key: str, urls: Collection[str]
    ) -> dict[str, EarlierOutput]:
        if not urls:
            return {}
        rows = await self._reader.execute_fetchall(
            f"SELECT {EARLIER_COLUMNS} FROM earlier_outputs WHERE owner = {JOB_OWNER} "
            f"AND options_key = ? AND url IN ({', '.join('?' * len(urls))})",
            (job_id, options_key, *urls),
        )
        return {output.outcome.url: output for output in map(earlier_from, rows)}

    async def end_pending_images(
        self, job_id: str, status: ImageStatus, code: str, message: str
    ) -> int:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE images SET status = ?, error_code = ?, error_message = ? "
                f"WHERE job_number = {JOB_NUMBER} AND status = ?",
                (status, code, message, job_id, ImageStatus.PENDING),
            )
            await update_counters(db, job_id, {status: cursor.rowcount})
            return cursor.rowcount

    async def products(self, job_id: str, offset: int, limit: int) -> list[ProductRecord]:
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
            f"SELECT product_seq, {IMAGE_COLUMNS} FROM images WHERE job_number = {JOB_NUMBER} "
            "AND product_seq BETWEEN ? AND ? ORDER BY product_seq, position",
            (job_id, first, last),
        )
        by_product: dict[int, list[ImageRecord]] = {}
        for row in images:
            by_product.setdefault(row[0], []).append(image_from(row[1:]))
        return [
            ProductRecord(
                seq, line, serial, name, tuple(json.loads(cells)), tuple(by_product.get(seq, ()))
            )
            for seq, line, serial, name, cells in products
        ]

    async def job_urls(
        self, job_id: str, after: str, limit: int, status: ImageStatus | None = None
    ) -> list[str]:
        sql = f"SELECT DISTINCT url FROM images WHERE job_number = {JOB_NUMBER} AND url > ?"
        args: tuple[Any, ...] = (job_id, after)
        if status is not None:
            sql += " AND status = ?"
            args += (status,)
        rows = await self._reader.execute_fetchall(f"{sql} ORDER BY url LIMIT ?", (*args, limit))
        return [r[0] for r in rows]

    async def in_flight(self, job_id: str) -> frozenset[str]:
        rows = await self._reader.execute_fetchall(
            "SELECT in_flight FROM work WHERE job_id = ? AND kind = ? "
            f"AND lease_until >= {NOW} AND in_flight IS NOT NULL",
            (job_id, WorkKind.SLICE),
        )
        return frozenset(url for (urls,) in rows for url in json.loads(urls))
