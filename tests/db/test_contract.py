"""What every database backend promises (imgsvc/db/interface.py), checked on each of them
directly, without HTTP: SQLite in a temporary folder and PostgreSQL on the session server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imgsvc.db import Database, KeyTaken, open_database
from imgsvc.db.slices import SLICE_SIZE
from imgsvc.models import (
    DeliveryAttempt,
    DeliveryState,
    EarlierOutput,
    ImageRecord,
    ImageStatus,
    Job,
    JobOptions,
    JobStatus,
    OutboxEntry,
    OutputFormat,
    Product,
    Rendition,
    Validators,
    WorkKind,
)

from ..conftest import batches, postgres_database, settings_for

pytestmark = pytest.mark.anyio

OWNER_A, OWNER_B = "process-a", "process-b"
LEASE = 30.0
SLICES = (WorkKind.SLICE,)
ENDINGS = (WorkKind.FINISH, WorkKind.CANCEL)


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """The same promises on each backend: a fresh database for every test."""
    async with AsyncExitStack() as stack:
        url = None
        if request.param == "postgres":
            server = request.getfixturevalue("postgres_server")  # started once a session
            url = await stack.enter_async_context(postgres_database(server))
        db = await open_database(settings_for(tmp_path, database_url=url))
        stack.push_async_callback(db.close)
        yield db


def whole_milliseconds() -> datetime:
    """Now, as precisely as every backend stores a time."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_job(products: list[Product], webhook_url: str | None = None) -> Job:
    stamp = whole_milliseconds()
    return Job(
        id=secrets.token_hex(8), status=JobStatus.PENDING, message="", created_at=stamp,
        updated_at=stamp, completed_at=None, base_url="http://imgsvc.test",
        webhook_url=webhook_url, options=JobOptions(50, None, OutputFormat.JPEG),
        header=("S. No.", "Product Name", "Input Image Urls"),
        total_products=len(products), total_images=sum(len(p.urls) for p in products),
        processed_products=0, processed_images=0, succeeded_images=0, failed_images=0,
        csv_filename="products.csv",
    )  # fmt: skip


def products_with(*urls: tuple[str, ...]) -> list[Product]:
    return [
        Product(n + 2, str(n + 1), f"SKU{n}", u, (str(n + 1), f"SKU{n}", ",".join(u)))
        for n, u in enumerate(urls)
    ]


async def stored_job(db: Database, *urls: tuple[str, ...], webhook: str | None = None) -> Job:
    job = new_job(products_with(*urls), webhook)
    await db.create_job(job, batches(products_with(*urls)))
    return job


def succeeded(url: str) -> ImageRecord:
    return ImageRecord(url, ImageStatus.SUCCEEDED, f"out-{url[-1]}.jpg", None, None, 10, 5, 4, 3)


def failed(url: str) -> ImageRecord:
    return ImageRecord(url, ImageStatus.FAILED, None, "http_error", "answered 404", None)


async def current(db: Database, job: Job) -> Job:
    found = await db.get_job(job.id)
    assert found is not None
    return found


async def test_a_stored_job_is_found_listed_and_paged(database: Database) -> None:
    products = products_with(("http://h/a", "http://h/b"), ("http://h/b",))
    job = new_job(products)
    await database.create_job(job, batches(products), owner="owner-1")
    other = await stored_job(database, ("http://h/c",))

    found = await current(database, job)
    assert found == job
    assert await database.get_job(job.id, owner="owner-1") == job
    assert await database.get_job(job.id, owner="owner-2") is None
    assert await database.get_job_and_owner(job.id) == (job, "owner-1")
    assert await database.get_job_and_owner(other.id) == (other, None)
    assert await database.get_job_and_owner("no-such-job") is None
    listed, total = await database.list_jobs(0, 10)
    assert total == 2
    assert [j.id for j in listed] == [other.id, job.id]  # newest first
    assert await database.list_jobs(0, 10, owner="owner-1") == ([job], 1)
    assert await database.jobs_by_state() == {"pending": 2}
    page = await database.products(job.id, 0, 10)
    assert [(p.seq, p.serial_number, p.cells) for p in page] == [
        (0, "1", products[0].cells), (1, "2", products[1].cells)
    ]  # fmt: skip
    assert [i.url for i in page[0].images] == ["http://h/a", "http://h/b"]
    assert await database.job_urls(job.id, "", 10) == ["http://h/a", "http://h/b"]
    assert await database.job_urls(job.id, "http://h/a", 10) == ["http://h/b"]


async def test_an_idempotency_key_is_taken_once(database: Database) -> None:
    products = products_with(("http://h/a",))
    first = new_job(products)
    await database.create_job(first, batches(products), ("key-1", "digest-1"))
    second = new_job(products)
    with pytest.raises(KeyTaken):
        await database.create_job(second, batches(products), ("key-1", "digest-2"))

    assert await database.job_by_idempotency_key("key-1") == (first, "digest-1")
    assert await database.get_job(second.id) is None
    assert await database.job_by_idempotency_key("key-2") is None


async def test_recorded_images_update_every_occurrence_and_the_counters(
    database: Database,
) -> None:
    job = await stored_job(database, ("http://h/a", "http://h/b"), ("http://h/a",), ("http://h/c",))
    await database.record_images(job.id, [succeeded("http://h/a"), failed("http://h/c")])

    found = await current(database, job)
    assert (found.processed_images, found.succeeded_images, found.failed_images) == (3, 2, 1)
    assert found.processed_products == 2  # the first still waits for http://h/b
    page = await database.products(job.id, 0, 10)
    assert page[1].images == (succeeded("http://h/a"),)
    assert page[2].images[0].error_code == "http_error"
    assert await database.job_urls(job.id, "", 10, ImageStatus.PENDING) == ["http://h/b"]

    ended = await database.end_pending_images(job.id, ImageStatus.CANCELLED, "cancelled", "x")
    assert ended == 1
    assert (await current(database, job)).processed_products == 3


async def test_a_job_stored_in_batches_keeps_each_url_in_the_slice_it_first_had(
    database: Database,
) -> None:
    first = [f"http://h/{n}" for n in range(SLICE_SIZE - 1)]
    # Batches of one product: the repeats of http://h/0 and http://h/again come in later
    # batches than their first occurrence, and must join its slice.
    urls = [(*first, "http://h/again"), ("http://h/0", "http://h/later"), ("http://h/again",)]
    products = products_with(*urls)
    job = replace(new_job(products), total_products=0, total_images=0)

    stored = await database.create_job(job, batches(products, size=1))

    assert (stored.total_products, stored.total_images) == (3, SLICE_SIZE + 3)
    assert await current(database, job) == stored
    assert await database.slice_urls(job.id, 0, "", SLICE_SIZE + 5) == sorted(
        [*first, "http://h/again"]
    )
    assert await database.slice_urls(job.id, 1, "", 10) == ["http://h/later"]
    claimed = await database.claim_work(OWNER_A, LEASE, SLICES, 5)
    assert sorted(i.slice or 0 for i in claimed) == [0, 1]


async def test_a_job_whose_batches_fail_leaves_nothing_behind(database: Database) -> None:
    products = products_with(("http://h/a",), ("http://h/b",))

    async def failing() -> AsyncIterator[list[Product]]:
        yield products[:1]
        raise ValueError("the upload is not valid")

    job = new_job(products)
    with pytest.raises(ValueError, match="not valid"):
        await database.create_job(job, failing(), ("key-1", "digest-1"))

    assert await database.get_job(job.id) is None
    assert await database.job_by_idempotency_key("key-1") is None
    assert await database.products(job.id, 0, 10) == []
    assert await database.claim_work(OWNER_A, LEASE, SLICES, 5) == []


async def test_a_product_is_counted_processed_once_when_its_last_image_ends(
    database: Database,
) -> None:
    urls = tuple(f"http://h/{n}" for n in range(20))
    job = await stored_job(database, urls, ("http://h/0",))
    await database.record_images(job.id, [failed("http://h/0")])
    assert (await current(database, job)).processed_products == 1  # the second product

    # Batches ending the first product's last images at once (separate connections on
    # PostgreSQL): exactly one of them counts it.
    await asyncio.gather(*(database.record_images(job.id, [succeeded(u)]) for u in urls[1:]))
    await database.record_images(job.id, [succeeded("http://h/5")])  # again: no change

    found = await current(database, job)
    assert (found.processed_products, found.processed_images) == (2, 21)


async def test_output_options_and_a_kept_input_are_stored_as_given(database: Database) -> None:
    products = products_with(("http://h/a", "http://h/b"))
    job = new_job(products)
    job = replace(job, options=replace(job.options, format=OutputFormat.AVIF, progressive=True))
    await database.create_job(job, batches(products))
    assert (await current(database, job)).options == job.options
    kept = replace(succeeded("http://h/a"), kept_input=True)
    await database.record_images(job.id, [kept, succeeded("http://h/b")])
    (product,) = await database.products(job.id, 0, 10)
    assert [i.kept_input for i in product.images] == [True, None]


async def test_sizes_and_each_images_renditions_are_stored_as_given(
    database: Database,
) -> None:
    products = products_with(("http://h/a", "http://h/b"), ("http://h/a",))
    job = new_job(products)
    job = replace(job, options=replace(job.options, sizes=(1600, 300, 800)))
    await database.create_job(job, batches(products))
    assert (await current(database, job)).options.sizes == (1600, 300, 800)
    renditions = (
        Rendition(1600, "out-a_1600.jpg", 1200, 900, 5000),
        Rendition(300, "out-a_300.jpg", 300, 225, 700),
        Rendition(800, "out-a_800.jpg", 800, 600, 2500),
    )
    await database.record_images(
        job.id, [replace(succeeded("http://h/a"), renditions=renditions), failed("http://h/b")]
    )
    first, second = await database.products(job.id, 0, 10)
    assert [i.renditions for i in first.images] == [renditions, ()]
    assert second.images[0].renditions == renditions  # every occurrence of the URL


async def test_a_claim_takes_no_more_than_its_limit_and_each_item_once(
    database: Database,
) -> None:
    jobs = [await stored_job(database, (f"http://h/{n}",)) for n in range(3)]

    first = await database.claim_work(OWNER_A, LEASE, SLICES, 2)
    second = await database.claim_work(OWNER_B, LEASE, SLICES, 5)

    assert len(first) == 2
    assert len(second) == 1
    assert {i.job_id for i in first + second} == {j.id for j in jobs}
    assert await database.claim_work(OWNER_B, LEASE, SLICES, 5) == []
    assert (await current(database, jobs[0])).status is JobStatus.PROCESSING
    assert await database.waiting_jobs() == 0


async def test_every_jobs_first_slice_comes_before_any_second(database: Database) -> None:
    big = await stored_job(database, tuple(f"http://h/{n}" for n in range(SLICE_SIZE + 1)))
    small = await stored_job(database, ("http://h/small",))

    claimed = await database.claim_work(OWNER_A, LEASE, SLICES, 2)

    assert [(i.job_id, i.slice) for i in claimed] == [(big.id, 0), (small.id, 0)]
    assert await database.slice_urls(big.id, 1, "", 10) == [f"http://h/{SLICE_SIZE}"]


async def test_a_lease_that_ran_out_lets_another_owner_claim(database: Database) -> None:
    job = await stored_job(database, ("http://h/a",))
    (item,) = await database.claim_work(OWNER_A, 0.2, SLICES, 1)
    assert await database.claim_work(OWNER_B, LEASE, SLICES, 1) == []

    await asyncio.sleep(0.4)
    assert await database.waiting_jobs() == 1
    (taken,) = await database.claim_work(OWNER_B, LEASE, SLICES, 1)

    assert taken.id == item.id
    assert taken.job_id == job.id
    assert await database.renew_work(OWNER_A, LEASE, {item.id: ()}) == set()
    assert await database.renew_work(OWNER_B, LEASE, {item.id: ("http://h/a",)}) == {item.id}
    assert await database.in_flight(job.id) == {"http://h/a"}
    await database.complete_work(OWNER_A, item)  # no longer A's: nothing changes
    await database.release_work(OWNER_A, [item.id])
    assert await database.renew_work(OWNER_B, LEASE, {item.id: ()}) == {item.id}


async def test_released_work_is_claimable_at_once_and_the_job_pending(
    database: Database,
) -> None:
    job = await stored_job(database, ("http://h/a",))
    (item,) = await database.claim_work(OWNER_A, LEASE, SLICES, 1)

    await database.release_work(OWNER_B, [item.id])  # not B's to give back
    assert await database.claim_work(OWNER_B, LEASE, SLICES, 1) == []
    await database.release_work(OWNER_A, [item.id])

    assert (await current(database, job)).status is JobStatus.PENDING
    assert [i.id for i in await database.claim_work(OWNER_B, LEASE, SLICES, 1)] == [item.id]


async def test_a_slice_with_pending_images_is_not_complete(database: Database) -> None:
    job = await stored_job(database, ("http://h/a", "http://h/b"))
    (item,) = await database.claim_work(OWNER_A, LEASE, SLICES, 1)
    await database.record_images(job.id, [succeeded("http://h/a")])

    assert not await database.complete_work(OWNER_A, item)
    assert await database.renew_work(OWNER_A, LEASE, {item.id: ()}) == {item.id}

    await database.record_images(job.id, [succeeded("http://h/b")])
    assert await database.complete_work(OWNER_A, item)
    (finish,) = await database.claim_work(OWNER_B, LEASE, ENDINGS, 4)
    assert (finish.job_id, finish.kind) == (job.id, WorkKind.FINISH)


async def test_the_finish_is_queued_by_the_last_slice_only(database: Database) -> None:
    job = await stored_job(database, tuple(f"http://h/{n}" for n in range(SLICE_SIZE + 1)))
    first, second = await database.claim_work(OWNER_A, LEASE, SLICES, 2)
    await database.record_images(job.id, [succeeded(f"http://h/{n}") for n in range(SLICE_SIZE)])

    assert await database.complete_work(OWNER_A, first)
    assert await database.claim_work(OWNER_B, LEASE, ENDINGS, 4) == []
    await database.record_images(job.id, [succeeded(f"http://h/{SLICE_SIZE}")])
    assert await database.complete_work(OWNER_A, second)
    assert [i.kind for i in await database.claim_work(OWNER_B, LEASE, ENDINGS, 4)] == [
        WorkKind.FINISH
    ]


async def test_a_cancel_waits_for_the_held_slices_and_frees_the_rest(
    database: Database,
) -> None:
    job = await stored_job(database, tuple(f"http://h/{n}" for n in range(SLICE_SIZE + 1)))
    (held,) = await database.claim_work(OWNER_A, LEASE, SLICES, 1)

    assert await database.request_cancel(job.id)

    # The slice nobody held is gone; the held one is no longer renewed for its worker.
    assert await database.claim_work(OWNER_B, LEASE, SLICES, 5) == []
    assert await database.renew_work(OWNER_A, LEASE, {held.id: ()}) == set()
    assert await database.claim_work(OWNER_B, LEASE, ENDINGS, 4) == []
    await database.release_work(OWNER_A, [held.id])
    assert await database.claim_work(OWNER_B, LEASE, SLICES, 5) == []
    (cancel,) = await database.claim_work(OWNER_B, LEASE, ENDINGS, 4)
    assert (cancel.job_id, cancel.kind) == (job.id, WorkKind.CANCEL)
    assert await database.renew_work(OWNER_B, LEASE, {cancel.id: ()}) == {cancel.id}


async def test_an_ended_job_cannot_be_cancelled_and_its_failures_can_be_retried(
    database: Database,
) -> None:
    job = await stored_job(database, ("http://h/a", "http://h/b"))
    assert await database.retry_failed(job.id) is None  # not ended
    await database.record_images(job.id, [succeeded("http://h/a"), failed("http://h/b")])
    assert await database.finish_job(job.id, JobStatus.COMPLETED, "", lambda j: None)
    assert not await database.finish_job(job.id, JobStatus.FAILED, "again", lambda j: None)
    assert not await database.request_cancel(job.id)
    assert await database.claim_work(OWNER_A, LEASE, (*SLICES, *ENDINGS), 5) == []

    assert await database.retry_failed(job.id) == 1

    found = await current(database, job)
    assert (found.status, found.failed_images, found.completed_at) == (JobStatus.PENDING, 0, None)
    (item,) = await database.claim_work(OWNER_A, LEASE, SLICES, 5)
    assert await database.slice_urls(job.id, item.slice or 0, "", 10) == ["http://h/b"]


async def test_a_delivery_is_claimed_once_and_falls_due_again_on_schedule(
    database: Database,
) -> None:
    job = await stored_job(database, ("http://h/a",), webhook="http://hook.test/")
    entry = OutboxEntry("msg_1", job.id, "http://hook.test/", '{"b": 1, "a": 2}',
                        datetime.now(UTC))  # fmt: skip
    assert await database.claim_deliveries(OWNER_A, LEASE, 5) == ([], None)
    assert await database.finish_job(job.id, JobStatus.COMPLETED, "", lambda j: entry)

    (delivery,), due_in = await database.claim_deliveries(OWNER_A, LEASE, 5)
    assert (delivery.id, delivery.payload, delivery.state) == (
        "msg_1", entry.payload, DeliveryState.PENDING
    )  # fmt: skip
    assert due_in is not None
    assert LEASE - 5 < due_in <= LEASE  # held: due when its lease runs out
    assert (await database.claim_deliveries(OWNER_B, LEASE, 5))[0] == []

    attempt = DeliveryAttempt(1, whole_milliseconds(), 12, 503)
    await database.record_attempt("msg_1", attempt, DeliveryState.PENDING, 60.0)
    claimed, due_in = await database.claim_deliveries(OWNER_B, LEASE, 5)
    assert claimed == []
    assert due_in is not None
    assert 55 < due_in <= 60
    found = await database.latest_delivery(job.id)
    assert found is not None
    assert (found[0].attempts, found[1]) == (1, [attempt])

    await database.redeliver("msg_1")
    (again,), _ = await database.claim_deliveries(OWNER_B, LEASE, 5)
    assert (again.id, again.round_start) == ("msg_1", 1)
    second = DeliveryAttempt(2, whole_milliseconds(), 15, 200)
    await database.record_attempt("msg_1", second, DeliveryState.DELIVERED, None)
    assert await database.claim_deliveries(OWNER_A, LEASE, 5) == ([], None)


async def test_the_webhook_secret_is_made_once(database: Database) -> None:
    first = await database.webhook_secret(lambda: "whsec_first")
    assert first == "whsec_first"
    assert await database.webhook_secret(lambda: "whsec_second") == "whsec_first"


async def test_retention_deletes_only_jobs_that_ended_before_the_cutoff(
    database: Database,
) -> None:
    old = await stored_job(database, ("http://h/a",), webhook="http://hook.test/")
    entry = OutboxEntry("msg_old", old.id, "http://hook.test/", "{}", datetime.now(UTC))
    assert await database.finish_job(old.id, JobStatus.COMPLETED, "", lambda j: entry)
    running = await stored_job(database, ("http://h/b",))
    future = datetime.now(UTC) + timedelta(seconds=5)

    assert [j.id for j in await database.expired_jobs(future, 10)] == [old.id]
    assert await database.expired_jobs(datetime.now(UTC) - timedelta(days=1), 10) == []
    assert not await database.delete_job(running.id, future)
    assert await database.delete_job(old.id, future)

    assert await database.get_job(old.id) is None
    assert await database.products(old.id, 0, 10) == []
    assert await database.job_urls(old.id, "", 10) == []
    assert await database.latest_delivery(old.id) is None
    assert await database.get_job(running.id) is not None


def earlier(url: str, sha256: str = "aa", etag: str | None = '"v1"') -> EarlierOutput:
    outcome = ImageRecord(url, ImageStatus.SUCCEEDED, f"out-{url[-1]}.jpg", None, None, 10, 5,
                          4, 3, kept_input=False)  # fmt: skip
    return EarlierOutput(Validators(etag, "Mon, 02 Nov 2026 10:00:00 GMT"), sha256, outcome)


async def owned_job(db: Database, owner: str | None, *urls: str) -> Job:
    job = new_job(products_with(urls))
    await db.create_job(job, batches(products_with(urls)), owner=owner)
    return job


async def remember(db: Database, job: Job, options_key: str, *outputs: EarlierOutput) -> None:
    """Record the outcomes of `outputs` in `job`, remembered for its options `options_key`."""
    await db.record_images(
        job.id, [o.outcome for o in outputs], options_key=options_key, remember=outputs
    )


async def test_earlier_outputs_are_found_per_owner_and_options(database: Database) -> None:
    first = await owned_job(database, "owner-1", "http://h/a", "http://h/b")
    await remember(database, first, "key-1", earlier("http://h/a"))
    rerun = await owned_job(database, "owner-1", "http://h/a", "http://h/b")
    stranger = await owned_job(database, "owner-2", "http://h/a")
    open_job = await owned_job(database, None, "http://h/a")

    urls = ["http://h/a", "http://h/b"]
    assert await database.earlier_outputs(rerun.id, "key-1", urls) == {
        "http://h/a": earlier("http://h/a")
    }
    assert await database.earlier_outputs(rerun.id, "key-2", urls) == {}
    assert await database.earlier_outputs(stranger.id, "key-1", urls) == {}
    assert await database.earlier_outputs(open_job.id, "key-1", urls) == {}
    assert await database.earlier_outputs(rerun.id, "key-1", []) == {}

    # The latest output of a URL is the one remembered, with its job.
    changed = replace(earlier("http://h/a", "bb", None), outcome=succeeded("http://h/a"))
    await remember(database, rerun, "key-1", changed, earlier("http://h/b"))
    found = await database.earlier_outputs(first.id, "key-1", urls)
    assert found == {"http://h/a": changed, "http://h/b": earlier("http://h/b")}
    await remember(database, open_job, "key-1", earlier("http://h/a"))
    other_open = await owned_job(database, None, "http://h/a")
    assert list(await database.earlier_outputs(other_open.id, "key-1", urls)) == ["http://h/a"]


async def test_earlier_outputs_go_with_the_job_that_made_them(database: Database) -> None:
    first = await owned_job(database, "owner-1", "http://h/a", "http://h/b")
    await remember(database, first, "key", earlier("http://h/a"), earlier("http://h/b"))
    rerun = await owned_job(database, "owner-1", "http://h/a", "http://h/b")
    await remember(database, rerun, "key", earlier("http://h/b", "cc"))
    for job in (first, rerun):
        await database.record_images(job.id, [succeeded("http://h/a"), succeeded("http://h/b")])
        assert await database.finish_job(job.id, JobStatus.COMPLETED, "", lambda j: None)

    assert await database.delete_job(first.id, datetime.now(UTC) + timedelta(seconds=5))

    urls = ["http://h/a", "http://h/b"]
    assert await database.earlier_outputs(rerun.id, "key", urls) == {
        "http://h/b": earlier("http://h/b", "cc")
    }


async def test_reused_images_are_stored_and_counted(database: Database) -> None:
    job = await stored_job(database, ("http://h/a", "http://h/b"), ("http://h/a",))
    reused_a = replace(succeeded("http://h/a"), reused=True)
    await database.record_images(job.id, [reused_a, succeeded("http://h/b")])

    found = await current(database, job)
    assert (found.succeeded_images, found.reused_images) == (3, 2)
    page = await database.products(job.id, 0, 10)
    assert [i.reused for p in page for i in p.images] == [True, False, True]
    products = products_with(("http://h/a",))
    no_reuse = new_job(products)
    no_reuse = replace(no_reuse, options=replace(no_reuse.options, reuse=False))
    await database.create_job(no_reuse, batches(products))
    assert (await current(database, no_reuse)).options.reuse is False
