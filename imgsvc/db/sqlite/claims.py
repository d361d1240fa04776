"""Work and webhook deliveries claimed under leases kept by the database's clock.

One process owns an SQLite file (the data folder's lock), so any lease found at start was
held by a process that is gone: `forget_leases` frees it at once instead of waiting it out.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from ...models import Delivery, DeliveryState, ImageStatus, JobStatus, WorkItem, WorkKind
from ..columns import DELIVERY_COLUMNS, WORK_COLUMNS
from .base import Connections
from .rows import JOB_NUMBER, NOW, NOW_PLUS, delivery_from, seconds, work_from

FREE = f"(lease_until IS NULL OR lease_until < {NOW})"


class ClaimQueries(Connections):
    """Claiming, renewing, releasing and completing work items and webhook deliveries."""

    async def forget_leases(self) -> None:
        """Free every lease: they were held by processes that are gone."""
        async with self._transaction() as db:
            await db.execute("UPDATE work SET owner = NULL, lease_until = NULL, in_flight = NULL")
            await db.execute(
                "UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL "
                "WHERE lease_owner IS NOT NULL"
            )

    async def claim_work(
        self, owner: str, lease: float, kinds: Collection[WorkKind], limit: int
    ) -> list[WorkItem]:
        marks = ", ".join("?" * len(kinds))
        async with self._transaction() as db:
            # The items are picked, at most `limit`, before anything is updated.
            rows = await db.execute_fetchall(
                f"WITH picked AS (SELECT id FROM work AS w WHERE kind IN ({marks}) AND {FREE} "
                "AND CASE kind WHEN ? THEN NOT EXISTS (SELECT 1 FROM jobs WHERE "
                "jobs.id = w.job_id AND cancel_requested = 1) WHEN ? THEN NOT EXISTS "
                "(SELECT 1 FROM work AS s WHERE s.job_id = w.job_id AND s.kind = ? "
                f"AND s.lease_until >= {NOW}) ELSE 1 END ORDER BY slice, id LIMIT ?) "
                f"UPDATE work SET owner = ?, lease_until = {NOW_PLUS}, in_flight = NULL "
                f"WHERE id IN (SELECT id FROM picked) RETURNING {WORK_COLUMNS}",
                (*kinds, WorkKind.SLICE, WorkKind.CANCEL, WorkKind.SLICE, limit, owner,
                 seconds(lease)),
            )  # fmt: skip
            items = [work_from(r) for r in rows]
            started = [(i.job_id,) for i in items if i.kind is WorkKind.SLICE]
            await db.executemany(
                f"UPDATE jobs SET status = '{JobStatus.PROCESSING}', updated_at = {NOW} "
                f"WHERE id = ? AND status = '{JobStatus.PENDING}'",
                started,
            )
        return items

    async def renew_work(
        self, owner: str, lease: float, in_flight: Mapping[int, Collection[str]]
    ) -> set[int]:
        async with self._transaction() as db:
            await db.executemany(
                f"UPDATE work SET lease_until = {NOW_PLUS}, in_flight = ? "
                "WHERE id = ? AND owner = ?",
                (
                    (seconds(lease), json.dumps(sorted(urls)), item_id, owner)
                    for item_id, urls in in_flight.items()
                ),
            )
            rows = await db.execute_fetchall(
                "SELECT work.id FROM work JOIN jobs ON jobs.id = work.job_id "
                "WHERE work.owner = ? AND (jobs.cancel_requested = 0 OR work.kind != ?)",
                (owner, WorkKind.SLICE),
            )
        return {r[0] for r in rows}

    async def release_work(self, owner: str, item_ids: Collection[int]) -> None:
        async with self._transaction() as db:
            marks = ", ".join("?" * len(item_ids))
            jobs = await db.execute_fetchall(
                f"UPDATE work SET owner = NULL, lease_until = NULL, in_flight = NULL "
                f"WHERE id IN ({marks}) AND owner = ? RETURNING job_id",
                (*item_ids, owner),
            )
            # A job no process works on any more is waiting again, as it shows.
            await db.executemany(
                f"UPDATE jobs SET status = '{JobStatus.PENDING}' WHERE id = ? "
                f"AND status = '{JobStatus.PROCESSING}' AND NOT EXISTS (SELECT 1 FROM work "
                f"WHERE job_id = ? AND lease_until >= {NOW})",
                {(job_id, job_id) for (job_id,) in jobs},
            )
        self.work_written.set()

    async def complete_work(self, owner: str, item: WorkItem) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM work WHERE id = ? AND owner = ? AND NOT EXISTS (SELECT 1 FROM "
                f"images WHERE job_number = {JOB_NUMBER} AND slice = ? AND status = ? AND ? = ?)",
                (item.id, owner, item.job_id, item.slice, ImageStatus.PENDING, item.kind,
                 WorkKind.SLICE),
            )  # fmt: skip
            if cursor.rowcount != 1:
                return not await db.execute_fetchall(
                    "SELECT 1 FROM work WHERE id = ? AND owner = ?", (item.id, owner)
                )
            if item.kind is not WorkKind.SLICE:
                return True
            # The last slice of a job queues its finishing, unless a cancel took over.
            cursor = await db.execute(
                "INSERT INTO work (job_id, kind) SELECT id, ? FROM jobs WHERE id = ? "
                "AND cancel_requested = 0 AND NOT EXISTS (SELECT 1 FROM work WHERE job_id = ?)",
                (WorkKind.FINISH, item.job_id, item.job_id),
            )
        if cursor.rowcount:
            self.work_written.set()
        return True

    async def waiting_jobs(self) -> int:
        rows = await self._reader.execute_fetchall(
            f"SELECT COUNT(DISTINCT job_id) FROM work WHERE {FREE}"
        )
        count: int = next(iter(rows))[0]
        return count

    async def claim_deliveries(
        self, owner: str, lease: float, limit: int
    ) -> tuple[list[Delivery], float | None]:
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                f"UPDATE webhook_deliveries SET lease_owner = ?, lease_until = {NOW_PLUS} "
                "WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = ? "
                f"AND next_attempt_at <= {NOW} AND {FREE} ORDER BY next_attempt_at LIMIT ?) "
                f"RETURNING {DELIVERY_COLUMNS}",
                (owner, seconds(lease), DeliveryState.PENDING, limit),
            )
            # Held deliveries count from when their lease runs out: a sender that died
            # leaves its claim behind, and someone must pick the delivery up then.
            due = await db.execute_fetchall(
                "SELECT (julianday(MIN(MAX(next_attempt_at, COALESCE(lease_until, '')))) "
                "- julianday('now')) * 86400.0 FROM webhook_deliveries WHERE state = ?",
                (DeliveryState.PENDING,),
            )
        wait: Any = next(iter(due))[0]
        return [delivery_from(r) for r in rows], None if wait is None else float(wait)
