"""The webhook outbox: deliveries that are due, and every attempt."""

from __future__ import annotations

from collections.abc import Callable

from ...models import Delivery, DeliveryAttempt, DeliveryState
from ..columns import ATTEMPT_COLUMNS, DELIVERY_COLUMNS
from .base import Connections
from .rows import NOW, NOW_PLUS, attempt_from, delivery_from, seconds, stored


class WebhookQueries(Connections):
    """The queries on the webhook outbox: due deliveries and their attempts."""

    async def record_attempt(
        self,
        delivery_id: str,
        attempt: DeliveryAttempt,
        state: DeliveryState,
        retry_in: float | None,
    ) -> None:
        async with self._transaction() as db:
            await db.execute(
                f"INSERT INTO webhook_attempts (delivery_id, {ATTEMPT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (delivery_id, attempt.number, stored(attempt.at), attempt.duration_ms,
                 attempt.status_code, attempt.error_code, attempt.error_message),
            )  # fmt: skip
            await db.execute(
                f"UPDATE webhook_deliveries SET attempts = ?, state = ?, "
                f"next_attempt_at = CASE WHEN ? IS NULL THEN NULL ELSE {NOW_PLUS} END, "
                "lease_owner = NULL, lease_until = NULL WHERE id = ?",
                (attempt.number, state, retry_in, seconds(retry_in or 0), delivery_id),
            )

    async def latest_delivery(self, job_id: str) -> tuple[Delivery, list[DeliveryAttempt]] | None:
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
        return delivery, [attempt_from(a) for a in attempts]

    async def redeliver(self, delivery_id: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                f"UPDATE webhook_deliveries SET state = ?, next_attempt_at = {NOW}, "
                "round_start = attempts WHERE id = ?",
                (DeliveryState.PENDING, delivery_id),
            )
        self.outbox_written.set()

    async def webhook_secret(self, make: Callable[[], str]) -> str:
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO secrets (name, value) VALUES ('webhook', ?)", (make(),)
            )
            rows = await db.execute_fetchall("SELECT value FROM secrets WHERE name = 'webhook'")
        secret: str = next(iter(rows))[0]
        return secret
