"""Work and webhook deliveries claimed under leases kept by the database's clock.

Each claim picks its rows in a materialized CTE with `FOR UPDATE SKIP LOCKED`: processes
claiming at once skip each other's rows instead of waiting, and the CTE is evaluated once,
so no more than `limit` rows are taken (an `IN (subquery)` may be re-run). Every change to
a held item is fenced by its owner.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from ...models import Delivery, DeliveryState, ImageStatus, JobStatus, WorkItem, WorkKind
from ..columns import DELIVERY_COLUMNS, WORK_COLUMNS
from .base import Connections
from .listen import WORK, announce
from .rows import FREE, NOW, NOW_PLUS, delivery_from, qualified, work_from

SLICE, CANCEL, FINISH = str(WorkKind.SLICE), str(WorkKind.CANCEL), str(WorkKind.FINISH)

LEASE_END = NOW_PLUS.replace("%s", "%(lease)s")
CLAIM_WORK = f"""
WITH picked AS MATERIALIZED (
    SELECT id FROM work AS w WHERE kind = ANY(%(kinds)s) AND {FREE}
    AND CASE kind
        WHEN '{SLICE}' THEN NOT EXISTS (
            SELECT 1 FROM jobs WHERE jobs.id = w.job_id AND cancel_requested)
        WHEN '{CANCEL}' THEN NOT EXISTS (
            SELECT 1 FROM work AS s WHERE s.job_id = w.job_id AND s.kind = '{SLICE}'
            AND s.lease_until >= {NOW})
        ELSE true END
    ORDER BY slice, id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE work SET owner = %(owner)s, lease_until = {LEASE_END},
    in_flight = NULL
FROM picked WHERE work.id = picked.id RETURNING {qualified("work", WORK_COLUMNS)}
"""

CLAIM_DELIVERIES = f"""
WITH picked AS MATERIALIZED (
    SELECT id FROM webhook_deliveries WHERE state = %(pending)s
    AND next_attempt_at <= {NOW} AND {FREE}
    ORDER BY next_attempt_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries AS d SET lease_owner = %(owner)s,
    lease_until = {LEASE_END}
FROM picked WHERE d.id = picked.id RETURNING {qualified("d", DELIVERY_COLUMNS)}
"""


class ClaimQueries(Connections):
    """Claiming, renewing, releasing and completing work items and webhook deliveries."""

    async def claim_work(
        self, owner: str, lease: float, kinds: Collection[WorkKind], limit: int
    ) -> list[WorkItem]:
        async with self._transaction() as db:
            cursor = await db.execute(
                CLAIM_WORK,
                {"kinds": [str(k) for k in kinds], "limit": limit, "owner": owner,
                 "lease": lease},
            )  # fmt: skip
            # RETURNING of an UPDATE ... FROM keeps no order: the claim's order is restored.
            items = sorted((work_from(r) for r in await cursor.fetchall()),
                           key=lambda i: (i.slice or 0, i.id))  # fmt: skip
        # In a transaction of its own: a claim holding its rows while it waited for a job's
        # row would deadlock with a cancel, which holds the job's row while it drops the
        # job's free work.
        started = sorted({i.job_id for i in items if i.kind is WorkKind.SLICE})
        if started:
            async with self._transaction() as db:
                await db.execute(
                    f"UPDATE jobs SET status = '{JobStatus.PROCESSING}', updated_at = {NOW} "
                    f"WHERE id = ANY(%s) AND status = '{JobStatus.PENDING}'",
                    (started,),
                )
        return items

    async def renew_work(
        self, owner: str, lease: float, in_flight: Mapping[int, Collection[str]]
    ) -> set[int]:
        async with self._transaction() as db:
            async with db.cursor() as cursor:
                # In id order, so two renewals never wait on each other's rows crosswise.
                await cursor.executemany(
                    f"UPDATE work SET lease_until = {NOW_PLUS}, in_flight = %s "
                    "WHERE id = %s AND owner = %s",
                    [(lease, sorted(urls), item_id, owner)
                     for item_id, urls in sorted(in_flight.items())],
                )  # fmt: skip
            cursor = await db.execute(
                "SELECT work.id FROM work JOIN jobs ON jobs.id = work.job_id "
                "WHERE work.owner = %s AND (NOT jobs.cancel_requested OR work.kind != %s)",
                (owner, SLICE),
            )
            return {r[0] for r in await cursor.fetchall()}

    async def release_work(self, owner: str, item_ids: Collection[int]) -> None:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE work SET owner = NULL, lease_until = NULL, in_flight = NULL "
                "WHERE id = ANY(%s) AND owner = %s RETURNING job_id",
                (sorted(item_ids), owner),
            )
            jobs = sorted({job_id for (job_id,) in await cursor.fetchall()})
            if jobs:
                await announce(db, WORK)
        self.work_written.set()
        if jobs:
            # A job no process works on any more is waiting again, as it shows. Apart, as
            # in claim_work: ending a job holds its row while it deletes the job's work.
            async with self._transaction() as db:
                await db.execute(
                    f"UPDATE jobs SET status = '{JobStatus.PENDING}' WHERE id = ANY(%s) "
                    f"AND status = '{JobStatus.PROCESSING}' AND NOT EXISTS (SELECT 1 "
                    f"FROM work WHERE work.job_id = jobs.id AND lease_until >= {NOW})",
                    (jobs,),
                )

    async def complete_work(self, owner: str, item: WorkItem) -> bool:
        async with self._transaction() as db:
            # The job's row is locked first: two processes completing a job's last two
            # slices at once must not both see the other's slice still there.
            await db.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (item.job_id,))
            cursor = await db.execute(
                "DELETE FROM work WHERE id = %s AND owner = %s AND NOT (%s AND EXISTS ("
                "SELECT 1 FROM images WHERE job_id = %s AND slice = %s AND status = %s))",
                (item.id, owner, item.kind is WorkKind.SLICE, item.job_id, item.slice,
                 str(ImageStatus.PENDING)),
            )  # fmt: skip
            if cursor.rowcount != 1:
                cursor = await db.execute(
                    "SELECT 1 FROM work WHERE id = %s AND owner = %s", (item.id, owner)
                )
                return await cursor.fetchone() is None
            if item.kind is not WorkKind.SLICE:
                return True
            # The last slice of a job queues its finishing, unless a cancel took over.
            cursor = await db.execute(
                "INSERT INTO work (job_id, kind) SELECT id, %s FROM jobs WHERE id = %s "
                "AND NOT cancel_requested AND NOT EXISTS (SELECT 1 FROM work "
                "WHERE job_id = %s) ON CONFLICT DO NOTHING",
                (FINISH, item.job_id, item.job_id),
            )
            if cursor.rowcount:
                await announce(db, WORK)
        if cursor.rowcount:
            self.work_written.set()
        return True

    async def waiting_jobs(self) -> int:
        rows = await self._rows(f"SELECT COUNT(DISTINCT job_id) FROM work WHERE {FREE}")
        return int(rows[0][0])

    async def claim_deliveries(
        self, owner: str, lease: float, limit: int
    ) -> tuple[list[Delivery], float | None]:
        async with self._transaction() as db:
            cursor = await db.execute(
                CLAIM_DELIVERIES,
                {"pending": str(DeliveryState.PENDING), "limit": limit, "owner": owner,
                 "lease": lease},
            )  # fmt: skip
            claimed = sorted((delivery_from(r) for r in await cursor.fetchall()),
                             key=lambda d: (d.next_attempt_at, d.id))  # fmt: skip
            # Held deliveries count from when their lease runs out: a sender that died
            # leaves its claim behind, and someone must pick the delivery up then.
            cursor = await db.execute(
                "SELECT EXTRACT(EPOCH FROM MIN(GREATEST(next_attempt_at, lease_until)) "
                f"- {NOW}) FROM webhook_deliveries WHERE state = %s",
                (str(DeliveryState.PENDING),),
            )
            due = await cursor.fetchone()
        wait = due[0] if due else None
        return claimed, None if wait is None else float(wait)
