"""Images and products: a job's pending work, outcomes, and pages of results."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from ...models import EarlierOutput, ImageRecord, ImageStatus, ProductRecord, WorkKind
from ..columns import EARLIER_COLUMNS, IMAGE_COLUMNS, remember_statement
from .base import Connections, update_counters
from .rows import NOW, earlier_from, earlier_values, image_from, renditions_value

# The owner of a job's earlier outputs: '' stands for none (API keys off).
JOB_OWNER = "(SELECT coalesce(owner, '') FROM jobs WHERE id = %s)"
REMEMBER = remember_statement(JOB_OWNER, "%s")


class ImageQueries(Connections):
    """The queries on images and products: pending work, outcomes, pages of results."""

    async def slice_urls(self, job_id: str, slice_no: int, after: str, limit: int) -> list[str]:
        rows = await self._rows(
            "SELECT DISTINCT url FROM images WHERE job_id = %s AND slice = %s AND status = %s "
            "AND url > %s ORDER BY url LIMIT %s",
            (job_id, slice_no, str(ImageStatus.PENDING), after, limit),
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
        values: list[tuple[Any, ...]] = [
            (str(r.status), r.output_name, r.error_code, r.error_message, r.bytes_in,
             r.bytes_out, r.width, r.height, r.kept_input, r.reused, renditions_value(r),
             job_id, r.url,
             str(ImageStatus.PENDING))
            for r in records
        ]  # fmt: skip
        async with self._transaction() as db, db.cursor() as cursor:
            # One round trip for the batch (psycopg pipelines executemany); every row
            # changed is returned, so each status is counted.
            await cursor.executemany(
                "UPDATE images SET status = %s, output_name = %s, error_code = %s, "
                "error_message = %s, bytes_in = %s, bytes_out = %s, width = %s, height = %s, "
                "kept_input = %s, reused = %s, renditions = %s "
                "WHERE job_id = %s AND url = %s AND status = %s "
                "RETURNING status, reused, product_seq",
                values,
                returning=True,
            )
            touched: set[int] = set()
            while True:
                for status, reuse, product_seq in await cursor.fetchall():
                    changed[ImageStatus(status)] += 1
                    reused += reuse
                    touched.add(product_seq)
                if not cursor.nextset():
                    break
            # The products this batch changed that have no image pending any more: it
            # ended them (they had one pending: the one it changed). The job's row is
            # locked first, so the count, a statement of its own, sees every batch of the
            # job committed before: of two batches ending one product at once, the second
            # to take the lock counts it.
            await cursor.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
            await cursor.execute(
                "SELECT COUNT(*) FROM unnest(%s::int[]) AS touched (seq) WHERE NOT EXISTS "
                "(SELECT 1 FROM images WHERE job_id = %s AND product_seq = touched.seq "
                "AND status = %s)",
                (list(touched), job_id, str(ImageStatus.PENDING)),
            )
            ended = await cursor.fetchone()
            assert ended is not None
            await update_counters(db, job_id, changed, reused, ended[0])
            # After the job's lock, and in URL order: two jobs of one owner remembering the
            # same URLs at once take their row locks in the same order, so neither waits on
            # the other in a deadlock.
            ordered = sorted(remember, key=lambda o: o.outcome.url)
            remembered = [(job_id, options_key, job_id, *earlier_values(o)) for o in ordered]
            if remembered:
                await cursor.executemany(REMEMBER, remembered)

    async def earlier_outputs(
        self, job_id: str, options_key: str, urls: Collection[str]
    ) -> dict[str, EarlierOutput]:
        if not urls:
            return {}
        rows = await self._rows(
            f"SELECT {EARLIER_COLUMNS} FROM earlier_outputs WHERE owner = {JOB_OWNER} "
            "AND options_key = %s AND url = ANY(%s)",
            (job_id, options_key, list(urls)),
        )
        return {output.outcome.url: output for output in map(earlier_from, rows)}

    async def end_pending_images(
        self, job_id: str, status: ImageStatus, code: str, message: str
    ) -> int:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE images SET status = %s, error_code = %s, error_message = %s "
                "WHERE job_id = %s AND status = %s",
                (str(status), code, message, job_id, str(ImageStatus.PENDING)),
            )
            await update_counters(db, job_id, {status: cursor.rowcount})
            return cursor.rowcount

    async def products(self, job_id: str, offset: int, limit: int) -> list[ProductRecord]:
        products = await self._rows(
            "SELECT seq, line, serial_number, product_name, cells FROM products "
            "WHERE job_id = %s AND seq >= %s ORDER BY seq LIMIT %s",
            (job_id, offset, limit),
        )
        if not products:
            return []
        first, last = products[0][0], products[-1][0]
        images = await self._rows(
            f"SELECT product_seq, {IMAGE_COLUMNS} FROM images WHERE job_id = %s "
            "AND product_seq BETWEEN %s AND %s ORDER BY product_seq, position",
            (job_id, first, last),
        )
        by_product: dict[int, list[ImageRecord]] = {}
        for row in images:
            by_product.setdefault(row[0], []).append(image_from(row[1:]))
        return [
            ProductRecord(seq, line, serial, name, tuple(cells), tuple(by_product.get(seq, ())))
            for seq, line, serial, name, cells in products
        ]

    async def job_urls(
        self, job_id: str, after: str, limit: int, status: ImageStatus | None = None
    ) -> list[str]:
        query = "SELECT DISTINCT url FROM images WHERE job_id = %s AND url > %s"
        args: tuple[Any, ...] = (job_id, after)
        if status is not None:
            query += " AND status = %s"
            args += (str(status),)
        rows = await self._rows(f"{query} ORDER BY url LIMIT %s", (*args, limit))
        return [r[0] for r in rows]

    async def in_flight(self, job_id: str) -> frozenset[str]:
        rows = await self._rows(
            "SELECT in_flight FROM work WHERE job_id = %s AND kind = %s "
            f"AND lease_until >= {NOW} AND in_flight IS NOT NULL",
            (job_id, str(WorkKind.SLICE)),
        )
        return frozenset(url for (urls,) in rows for url in urls)
