"""Endpoints that steer a job after upload: cancel, retry, and sending its webhook again."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ApiError
from ..models import Job
from ..pipeline.webhooks import webhook_object
from . import payloads
from .services import Services, job_of, services_of


async def cancel(request: Request) -> Response:
    """Stop a pending or processing job: unfinished images end as cancelled."""
    services, job = await _job(request)
    if job.status.terminal or not await services.runner.cancel(job.id):
        raise ApiError(
            409,
            "already_ended",
            f"the job has already ended ({job.status.value}); only a pending or processing "
            "job can be cancelled",
        )
    _, job = await _job(request)
    return JSONResponse(payloads.status_object(job))


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
    services.runner.submit(job.id)
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
