"""Processes sharing a PostgreSQL database hear at once of work another one added."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from imgsvc.db.postgres import PostgresDatabase
from imgsvc.models import JobStatus, OutboxEntry

from .test_contract import new_job, products_with

pytestmark = pytest.mark.anyio

HEARD_WITHIN = 2.0  # seconds; the engine's own polling would find it within one


@pytest.fixture
async def two_processes(postgres_url: str) -> AsyncIterator[tuple[PostgresDatabase, ...]]:
    """The database as two processes see it: the second one listens."""
    writer = await PostgresDatabase.open(postgres_url)
    listener = await PostgresDatabase.open(postgres_url, listen=True)
    try:
        yield writer, listener
    finally:
        await listener.close()
        await writer.close()


async def heard(event: asyncio.Event) -> None:
    async with asyncio.timeout(HEARD_WITHIN):
        await event.wait()


async def quiet(*events: asyncio.Event) -> None:
    """Clear events once the listener's first wake-up (on connecting) has come."""
    await asyncio.sleep(0.2)
    for event in events:
        event.clear()


async def test_a_new_job_and_a_due_webhook_wake_the_other_process(
    two_processes: tuple[PostgresDatabase, PostgresDatabase],
) -> None:
    writer, listener = two_processes
    await quiet(listener.work_written, listener.outbox_written)
    products = products_with(("http://h/a",))
    job = new_job(products, "http://hook.test/")

    await writer.create_job(job, products)
    await heard(listener.work_written)
    assert not listener.outbox_written.is_set()

    entry = OutboxEntry("msg_1", job.id, "http://hook.test/", "{}", datetime.now(UTC))
    assert await writer.finish_job(job.id, JobStatus.COMPLETED, "", lambda j: entry)
    await heard(listener.outbox_written)


async def test_a_process_that_does_not_listen_hears_nothing(
    two_processes: tuple[PostgresDatabase, PostgresDatabase],
) -> None:
    writer, listener = two_processes
    await quiet(writer.work_written, listener.work_written)
    products = products_with(("http://h/a",))

    await listener.create_job(new_job(products), products)
    await heard(listener.work_written)  # its own commit
    await asyncio.sleep(0.5)
    assert not writer.work_written.is_set()
