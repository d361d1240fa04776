"""What the pipeline and the routes ask of a database, whichever backend answers.

Times are `datetime`s in UTC here; each backend stores them its own way. Leases are kept
by the database's clock, so processes whose clocks disagree still agree on who holds what.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from ..models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    EarlierOutput,
    ImageRecord,
    ImageStatus,
    Job,
    JobStatus,
    OutboxEntry,
    Product,
    ProductRecord,
    WorkItem,
    WorkKind,
)


class KeyTaken(Exception):
    """An Idempotency-Key is already stored with another job."""


class Database(Protocol):
    """Jobs, their images, the work that produces them, and the webhook outbox."""

    # Set after a commit that added claimable work or made a webhook delivery due, by this
    # process or (where the backend can tell) another one: a hint to look now, never the
    # only way work is found.
    work_written: asyncio.Event
    outbox_written: asyncio.Event

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise unless the database answers."""

    # Jobs

    async def create_job(
        self,
        job: Job,
        batches: AsyncIterable[Sequence[Product]],
        idempotency: tuple[str, str] | None = None,
        *,
        owner: str | None = None,
    ) -> Job:
        """Store a job with its products, its images and the work to produce them, at once,
        and give the job as stored.

        The products come in batches, in input order, and are stored as they come (an
        upload is never held whole); the job's totals are counted from them. An exception
        raised by `batches` undoes everything. The job's distinct URLs are cut into slices
        (every occurrence of a URL in one slice), each a work item. `idempotency` is (key,
        digest of the upload): a key already taken raises KeyTaken and nothing is stored.
        `owner` is the hash of the API key that created the job."""

    async def get_job(self, job_id: str, *, owner: str | None = None) -> Job | None:
        """A job by id; with `owner`, only if that owner created it."""

    async def get_job_and_owner(self, job_id: str) -> tuple[Job, str | None] | None:
        """A job by id with its owner (None for a job made with API keys off): one read
        whose owner is then checked against every caller watching the job."""

    async def list_jobs(
        self, offset: int, limit: int, *, owner: str | None = None
    ) -> tuple[list[Job], int]:
        """Jobs newest first (with `owner`, only theirs), and how many there are in all."""

    async def jobs_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (for metrics)."""

    async def job_by_idempotency_key(self, key: str) -> tuple[Job, str] | None:
        """The job an upload with this Idempotency-Key created, and that upload's digest."""

    async def finish_job(
        self,
        job_id: str,
        status: JobStatus,
        message: str,
        outbox: Callable[[Job], OutboxEntry | None],
        *,
        only_from: JobStatus | None = None,
    ) -> bool:
        """Move a job to a terminal `status`, write its webhook and drop its remaining work,
        in one transaction.

        `outbox` gets the job as it now stands and returns the webhook message (None when
        the job has no webhook URL). The job moves only if it has not ended (with
        `only_from`: only from that state). True if it moved."""

    async def request_cancel(self, job_id: str) -> bool:
        """Record that a job is to be cancelled and queue the cancel as work; False if it
        has ended. Work not being done is dropped; slices being worked on are stopped by
        their holders, who see the request when they renew their leases."""

    async def retry_failed(self, job_id: str) -> int | None:
        """Put an ended job's failed images back to pending, with work to produce them.

        None if the job has not ended; otherwise how many images were re-queued."""

    async def expired_jobs(self, cutoff: datetime, limit: int) -> list[Job]:
        """Jobs that ended before `cutoff`, oldest first."""

    async def delete_job(self, job_id: str, cutoff: datetime) -> bool:
        """Delete an ended job older than `cutoff` with everything that belongs to it."""

    def retention_turn(self) -> AbstractAsyncContextManager[bool]:
        """Whether this process sweeps expired jobs now: True in one process at a time
        among those sharing the database (the others skip this sweep)."""

    # Images and products

    async def slice_urls(self, job_id: str, slice_no: int, after: str, limit: int) -> list[str]:
        """A page of the distinct pending URLs of one slice of a job, in order, after `after`."""

    async def record_images(
        self,
        job_id: str,
        records: Iterable[ImageRecord],
        *,
        options_key: str = "",
        remember: Iterable[EarlierOutput] = (),
    ) -> None:
        """Store how URLs ended, for every pending occurrence, and update the job's counters.

        In the same transaction, make the outputs in `remember` the ones later jobs of this
        job's owner with the options `options_key` (JobOptions.output_key) reuse, each in
        place of what was remembered for its URL. They are forgotten when the job is
        deleted, as its files go with it."""

    # Reuse across jobs

    async def earlier_outputs(
        self, job_id: str, options_key: str, urls: Collection[str]
    ) -> dict[str, EarlierOutput]:
        """What jobs of this job's owner made from these URLs with the options `options_key`
        (JobOptions.output_key), by URL; in one query for a slice's page of URLs."""

    async def end_pending_images(
        self, job_id: str, status: ImageStatus, code: str, message: str
    ) -> int:
        """End every pending image of a job in `status` with `code`; how many there were."""

    async def products(self, job_id: str, offset: int, limit: int) -> list[ProductRecord]:
        """A page of a job's products in input order, each with its images."""

    async def job_urls(
        self, job_id: str, after: str, limit: int, status: ImageStatus | None = None
    ) -> list[str]:
        """A page of a job's distinct URLs (with `status` only) in order, after `after`."""

    async def in_flight(self, job_id: str) -> frozenset[str]:
        """The URLs of a job that some process is downloading or compressing right now."""

    # Work: claimed under leases

    async def claim_work(
        self, owner: str, lease: float, kinds: Collection[WorkKind], limit: int
    ) -> list[WorkItem]:
        """Claim up to `limit` work items of these kinds for `owner` for `lease` seconds.

        Free items and items whose lease ran out are claimable, slices by slice number, so
        every job's first slice comes before any job's second: a small job behind a huge
        one starts within one slice. A cancel is claimable once no slice of its job is
        held. A job whose slice is claimed turns processing."""

    async def renew_work(
        self, owner: str, lease: float, in_flight: Mapping[int, Collection[str]]
    ) -> set[int]:
        """Extend `owner`'s leases on these items, storing the URLs each has in flight.

        Returns the items still held, less slices of jobs being cancelled: any other
        item must be abandoned by its worker."""

    async def release_work(self, owner: str, item_ids: Collection[int]) -> None:
        """Give items back unfinished: claimable again at once. A job none of whose work
        is held any more turns pending."""

    async def complete_work(self, owner: str, item: WorkItem) -> bool:
        """An item is done. When a job's last slice is done, its finishing is queued.

        A slice with images still pending is not done: False, and nothing changes."""

    async def waiting_jobs(self) -> int:
        """How many jobs have work that no process holds (for metrics)."""

    # The webhook outbox

    async def claim_deliveries(
        self, owner: str, lease: float, limit: int
    ) -> tuple[list[Delivery], float | None]:
        """Claim up to `limit` due deliveries for one attempt each, and say in how many
        seconds the next unclaimed one falls due (None: none is waiting), both by the
        database's clock."""

    async def record_attempt(
        self,
        delivery_id: str,
        attempt: DeliveryAttempt,
        state: DeliveryState,
        retry_in: float | None,
    ) -> None:
        """Log one attempt, set where the delivery stands, and release its claim; the next
        attempt falls due `retry_in` seconds from now (None: no more attempts)."""

    async def latest_delivery(self, job_id: str) -> tuple[Delivery, list[DeliveryAttempt]] | None:
        """A job's most recent webhook delivery with every attempt, oldest first."""

    async def redeliver(self, delivery_id: str) -> None:
        """Make a delivery due now with a fresh round of retries (its id stays the same)."""

    async def webhook_secret(self, make: Callable[[], str]) -> str:
        """The service's generated webhook secret, made with `make()` the first time; every
        process sharing the database gets the same one."""
