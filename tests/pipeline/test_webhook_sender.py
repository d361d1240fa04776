"""The webhook sender against a real SQLite database and a real receiver: a retry falls due
on time even when the database is slow to answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from imgsvc.db.sqlite import SqliteDatabase
from imgsvc.models import (
    Delivery,
    Job,
    JobOptions,
    JobStatus,
    OutboxEntry,
    OutputFormat,
    Product,
)
from imgsvc.pipeline.netguard import AddressPolicy
from imgsvc.pipeline.signing import secret_key
from imgsvc.pipeline.webhooks import WebhookSender

from ..conftest import SECRET, Receiver, batches

pytestmark = pytest.mark.anyio

SLOW = 0.6  # seconds the database takes to hand back what it found


class SlowToAnswer(SqliteDatabase):
    """The real database, whose answer to a claim arrives late (a busy or distant server)."""

    async def claim_deliveries(
        self, owner: str, lease: float, limit: int
    ) -> tuple[list[Delivery], float | None]:
        found = await super().claim_deliveries(owner, lease, limit)
        await asyncio.sleep(SLOW)
        return found


async def a_finished_job_with_a_webhook(db: SqliteDatabase, url: str) -> None:
    now = datetime.now(UTC)
    header = ("S. No.", "Product Name", "Input Image Urls")
    job = Job("j1", JobStatus.PENDING, "", now, now, None, "http://imgsvc", url,
              JobOptions(50, None, OutputFormat.JPEG), header, 1, 1, 0, 0, 0, 0)  # fmt: skip
    await db.create_job(job, batches([Product(2, "1", "A", ("http://a/1.jpg",), ("1", "A", "x"))]))
    entry = OutboxEntry("msg_1", "j1", url, '{"type":"job.completed"}', now)
    assert await db.finish_job("j1", JobStatus.COMPLETED, "", lambda _: entry)


async def test_a_retry_due_in_a_second_is_sent_then_though_the_database_answers_late(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The sender used to decide "due" in the database and "how long to sleep" by its own
    clock in a second read: a delivery falling due between the two was neither sent nor
    waited for, and went out only when the idle timeout (a minute) or another job woke the
    sender. Both now come from one claim, by the database's clock."""

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=503, text="busy")

    receiver.script = [refuse]
    db = await SlowToAnswer.open(tmp_path)
    policy = AddressPolicy(allow_private=True, allow_networks=())
    sender = WebhookSender(db, "test", policy, [secret_key(SECRET)], (1.0,), 5.0)
    try:
        await a_finished_job_with_a_webhook(db, receiver.url())
        sender.start()
        first, second = await receiver.wait_calls(2)
    finally:
        await sender.stop()
        await db.close()
    gap = second.arrived - first.arrived
    assert 1.0 <= gap < 1.2 * 1.0 + 2 * SLOW + 1.0, gap  # the schedule's second, jitter, latency
