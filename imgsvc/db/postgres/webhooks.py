"""The webhook outbox: deliveries that are due, every attempt, and the generated secret."""

from __future__ import annotations

from collections.abc import Callable

from ...models import Delivery, DeliveryAttempt, DeliveryState
from ..columns import ATTEMPT_COLUMNS, DELIVERY_COLUMNS
from .base import Connections
from .listen import OUTBOX, announce
from .rows import NOW, NOW_PLUS, attempt_from, delivery_from


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
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (delivery_id, attempt.number, attempt.at, attempt.duration_ms,
                 attempt.status_code, attempt.error_code, attempt.error_message),
            )  # fmt: skip
            await db.execute(
                "UPDATE webhook_deliveries SET attempts = %s, state = %s, next_attempt_at = "
                f"CASE WHEN %s THEN NULL ELSE {NOW_PLUS} END, "
                "lease_owner = NULL, lease_until = NULL WHERE id = %s",
                (attempt.number, str(state), retry_in is None, retry_in or 0.0, delivery_id),
            )

    async def latest_delivery(self, job_id: str) -> tuple[Delivery, list[DeliveryAttempt]] | None:
        rows = await self._rows(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE job_id = %s "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            (job_id,),
        )
        if not rows:
            return None
        delivery = delivery_from(rows[0])
        attempts = await self._rows(
            f"SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE delivery_id = %s "
            "ORDER BY number",
            (delivery.id,),
        )
        return delivery, [attempt_from(a) for a in attempts]

    async def redeliver(self, delivery_id: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                f"UPDATE webhook_deliveries SET state = %s, next_attempt_at = {NOW}, "
                "round_start = attempts WHERE id = %s",
                (str(DeliveryState.PENDING), delivery_id),
            )
            await announce(db, OUTBOX)
        self.outbox_written.set()

    async def webhook_secret(self, make: Callable[[], str]) -> str:
        # The first process to insert wins; every other one reads what it stored.
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO secrets (name, value) VALUES ('webhook', %s) ON CONFLICT DO NOTHING",
                (make(),),
            )
            cursor = await db.execute("SELECT value FROM secrets WHERE name = 'webhook'")
            row = await cursor.fetchone()
        assert row is not None
        secret: str = row[0]
        return secret
