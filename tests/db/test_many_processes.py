"""What processes sharing one PostgreSQL database rely on beside the contract: they start
together, agree on one webhook secret, claim each item once, and hear of each other's work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial

import psycopg
import pytest

from imgsvc.db.postgres import PostgresDatabase
from imgsvc.models import JobStatus, OutboxEntry, WorkKind

from ..backends import PostgresServer
from ..conftest import batches
from .test_contract import new_job, products_with

pytestmark = pytest.mark.anyio

HEARD_WITHIN = 2.0  # seconds; the engine's own polling would find it within one
PROCESSES = 6


async def test_processes_that_start_together_migrate_once(postgres_server: PostgresServer) -> None:
    name = postgres_server.database()  # empty
    url = postgres_server.url(name)
    try:
        opened = await asyncio.gather(*(PostgresDatabase.open(url) for _ in range(PROCESSES)))
        secrets = await asyncio.gather(
            *(db.webhook_secret(partial(str, f"whsec_{n}")) for n, db in enumerate(opened))
        )
        await asyncio.gather(*(db.close() for db in opened))
    finally:
        postgres_server.drop(name)
    assert len(set(secrets)) == 1


async def test_concurrent_claims_take_every_item_exactly_once(postgres_url: str) -> None:
    processes = [await PostgresDatabase.open(postgres_url) for _ in range(PROCESSES)]
    try:
        for n in range(40):
            products = products_with((f"http://h/{n}",))
            await processes[0].create_job(new_job(products), batches(products))

        async def drain(db: PostgresDatabase, owner: str) -> list[int]:
            taken: list[int] = []
            while items := await db.claim_work(owner, 30.0, (WorkKind.SLICE,), 3):
                assert len(items) <= 3
                taken += [i.id for i in items]
            return taken

        claimed = await asyncio.gather(*(drain(db, f"p{n}") for n, db in enumerate(processes)))
    finally:
        await asyncio.gather(*(db.close() for db in processes))
    every = [item for taken in claimed for item in taken]
    assert len(every) == len(set(every)) == 40


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

    await writer.create_job(job, batches(products))
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

    await listener.create_job(new_job(products), batches(products))
    await heard(listener.work_written)  # its own commit
    await asyncio.sleep(0.5)
    assert not writer.work_written.is_set()


async def test_a_claim_never_deadlocks_with_a_cancel_of_the_same_job(postgres_url: str) -> None:
    """A cancel holds the job's row while it drops the job's free work; a claim of that work
    meanwhile must not hold the work while it waits for the job's row."""
    db = await PostgresDatabase.open(postgres_url)
    products = products_with(("http://h/a",))
    job = new_job(products)
    await db.create_job(job, batches(products))
    try:
        async with await psycopg.AsyncConnection.connect(postgres_url) as cancel:
            await cancel.execute("UPDATE jobs SET cancel_requested = true WHERE id = %s", (job.id,))
            claim = asyncio.create_task(db.claim_work("p0", 30.0, (WorkKind.SLICE,), 1))
            async with asyncio.timeout(5):  # the claim is committed while the job is held
                while not await claimed_by_someone(postgres_url, job.id):
                    await asyncio.sleep(0.02)
            await cancel.execute(
                "DELETE FROM work WHERE job_id = %s AND lease_until IS NULL", (job.id,)
            )
            await cancel.commit()
        (item,) = await claim
    finally:
        await db.close()
    assert item.job_id == job.id


async def claimed_by_someone(url: str, job_id: str) -> bool:
    """Whether a committed claim holds work of the job, as any other connection sees it."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
        cursor = await db.execute(
            "SELECT 1 FROM work WHERE job_id = %s AND owner IS NOT NULL", (job_id,)
        )
        return await cursor.fetchone() is not None


async def test_one_process_at_a_time_sweeps_expired_jobs(postgres_url: str) -> None:
    first = await PostgresDatabase.open(postgres_url)
    second = await PostgresDatabase.open(postgres_url)
    try:
        async with first.retention_turn() as mine:
            assert mine
            async with second.retention_turn() as theirs:
                assert not theirs  # the first still sweeps
        async with second.retention_turn() as theirs:
            assert theirs  # the first has ended its sweep
    finally:
        await first.close()
        await second.close()
