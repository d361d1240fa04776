"""The webhook outbox: deliveries that are due, and every attempt."""

from __future__ import annotations

from ..models import Delivery, DeliveryAttempt, DeliveryState
from .base import Connections
from .rows import ATTEMPT_COLUMNS, DELIVERY_COLUMNS, delivery_from, now


class WebhookQueries(Connections):
    """The queries on the webhook outbox: due deliveries and their attempts."""

    async def due_deliveries(self, limit: int) -> list[Delivery]:
        """Pending webhook deliveries whose next attempt is due, the longest waiting first."""
        rows = await self._reader.execute_fetchall(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE state = ? "
            "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (DeliveryState.PENDING, now(), limit),
        )
        return [delivery_from(r) for r in rows]

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
        delivery = delivery_from(next(iter(rows)))
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
