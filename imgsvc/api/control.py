"""Endpoints that steer a job after upload: cancel, retry, and sending its webhook again."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..db import Database
from ..errors import ApiError
from ..models import Job
from ..pipeline.webhooks import webhook_object
from . import payloads
from .services import Services, job_of, services_of

CANCEL_WAIT = 30.0  # seconds a cancel request waits to answer with the job ended
CANCEL_POLL = 0.05  # seconds between looks at the job meanwhile


async def cancel(request: Request) -> Response:
    """Stop a pending or processing job: unfinished images end as cancelled.

    200 with the job cancelled; 202 if it is still ending after CANCEL_WAIT (work on it
    stops everywhere, and it ends as soon as its images in flight have stopped)."""
    services, job = await _job(request)
    if job.status.terminal or not await services.runner.cancel(job.id):
        raise ApiError(
            409,
            "already_ended",
            f"the job has already ended ({job.status.value}); only a pending or processing "
            "job can be cancelled",
        )
    job = await _ended(services.db, job)
    return JSONResponse(payloads.status_object(job), 200 if job.status.terminal else 202)


async def retry(request: Request) -> Response:
    """Put an ended job's failed images back in the queue; the rest is kept as it is."""
    services, job = await _job(request)
    services.lifecycle.refuse_when_stopping()
    count = await services.db.retry_failed(job.id)
    if count is None:
        raise ApiError(
            409,
            "not_finished",
            f"the job is {job.status.value}; only a job that has ended can be retried",
        )
    if count == 0:
        raise ApiError(409, "nothing_to_retry", "the job has no failed images to retry")
    services.runner.wake()
    _, job = await _job(request)
    body = payloads.status_object(job) | {"retried_images": count}
    return JSONResponse(body, 202, headers={"Location": payloads.links(job)["status_url"]})


async def redeliver_webhook(request: Request) -> Response:
    """Send a finished job's webhook again, with the same `webhook-id` and fresh retries."""
    job = await job_of(request)
    db = services_of(request).db
    if job.webhook_url is None:
        raise ApiError(409, "no_webhook", "this job was submitted without a webhook_url")
    found = await db.latest_delivery(job.id)
    if found is None:
        raise ApiError(
            409, "not_finished", f"the job is {job.status.value}; its webhook is sent when it ends"
        )
    await db.redeliver(found[0].id)
    return JSONResponse(webhook_object(job, await db.latest_delivery(job.id)), 202)


async def _job(request: Request) -> tuple[Services, Job]:
    return services_of(request), await job_of(request)


async def _ended(db: Database, job: Job) -> Job:
    """The job once it has ended, or as it stands after CANCEL_WAIT."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CANCEL_WAIT):
            while not job.status.terminal:
                await asyncio.sleep(CANCEL_POLL)
                job = await db.get_job(job.id) or job
    return job
