"""The HTTP endpoints: thin functions from a request to a domain call to a response."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from . import csvio, gil, idempotency, payloads
from .auth import request_owner
from .config import Settings
from .db import Database, KeyTaken, now
from .errors import ApiError, not_found
from .jobs import JobRunner
from .lifecycle import Lifecycle, Phase
from .models import Job, JobStatus
from .storage import Storage
from .uploads import read_upload, whole_number
from .webhooks import webhook_object

IMMUTABLE = "public, max-age=31536000, immutable"
DETAILS_PAGE = 1000  # products per details page, at most and by default
JOBS_PAGE, MAX_JOBS_PAGE = 50, 500  # jobs per list page: by default, at most


@dataclass(frozen=True)
class Services:
    """What the lifespan made, as the routes see it on `request.state.services`."""

    settings: Settings
    db: Database
    storage: Storage
    runner: JobRunner
    lifecycle: Lifecycle


def services_of(request: Request) -> Services:
    services: Services = request.state.services
    return services


async def upload(request: Request) -> Response:
    # Parsing and storing a big upload keeps a thread busy in Python for seconds.
    with gil.quick_handover():
        return await _accept_upload(request)


async def _accept_upload(request: Request) -> Response:
    services = services_of(request)
    owner = request_owner(request)
    key = idempotency.header_key(request, owner)
    received = await read_upload(request, services.settings)
    # Hashing up to IMGSVC_MAX_UPLOAD_BYTES would hold up the event loop: a thread does it.
    digest = await run_in_threadpool(idempotency.digest, received) if key else ""
    if key and (earlier := await idempotency.earlier_answer(services.db, key, digest)):
        return earlier
    try:
        parsed = await run_in_threadpool(
            csvio.parse_csv, received.data, services.settings.csv_limits
        )
    except csvio.CsvError as exc:
        raise ApiError(
            400, "invalid_csv", exc.detail, [p.as_dict() for p in exc.problems]
        ) from None
    stamp = now()
    job = Job(
        id=secrets.token_hex(16),
        status=JobStatus.PENDING,
        message="",
        created_at=stamp,
        updated_at=stamp,
        completed_at=None,
        base_url=services.settings.public_url or str(request.base_url).rstrip("/"),
        webhook_url=received.webhook_url,
        options=received.options,
        header=parsed.header,
        total_products=len(parsed.products),
        total_images=parsed.total_images,
        processed_products=0,
        processed_images=0,
        succeeded_images=0,
        failed_images=0,
    )
    services.lifecycle.refuse_when_stopping()
    try:
        await services.db.create_job(
            job, parsed.products, (key, digest) if key else None, owner=owner
        )
    except KeyTaken:  # the same key, sent again while the first upload was being stored
        assert key is not None
        earlier = await idempotency.earlier_answer(services.db, key, digest)
        assert earlier is not None
        return earlier
    services.runner.submit(job.id)
    answer = payloads.upload_answer(job)
    return JSONResponse(answer, 202, headers={"Location": answer["status_url"]})


async def status(request: Request) -> Response:
    return JSONResponse(payloads.status_object(await job_of(request)))


async def details(request: Request) -> Response:
    job = await job_of(request)
    offset = _query_int(request, "offset", 0, 0, job.total_products)
    limit = _query_int(request, "limit", DETAILS_PAGE, 1, DETAILS_PAGE)
    services = services_of(request)
    db = services.db
    products = await db.products(job.id, offset, limit)
    in_flight = services.runner.in_flight(job.id)
    webhook = webhook_object(job, await db.latest_delivery(job.id) if job.webhook_url else None)

    def answer() -> Response:
        body = payloads.details_object(job, products, offset, limit, in_flight)
        return JSONResponse(body | {"webhook": webhook})

    # A page holds up to 1,000 products of up to 100 images each: build and encode it in
    # a thread, not on the event loop.
    return await run_in_threadpool(answer)


async def download(request: Request) -> Response:
    job = await job_of(request)
    path = finished_results(request, job, "the results CSV")
    return FileResponse(path, media_type="text/csv", filename=f"results-{job.id}.csv")


def finished_results(request: Request, job: Job, what: str) -> Path:
    """The job's results CSV; 409 not_finished (naming `what`) until the job has ended."""
    path = services_of(request).storage.results_path(job.id)
    if not job.status.terminal or not path.exists():
        raise ApiError(
            409,
            "not_finished",
            f"the job is {job.status.value}; {what} is ready when it has finished",
        )
    return path


async def image(request: Request) -> Response:
    name = request.path_params["filename"]
    try:
        path = services_of(request).storage.image_path(name)
    except ValueError:
        raise not_found("the image") from None
    if not path.is_file():
        raise not_found("the image")
    etag = f'"{name.split(".")[0]}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    media = "image/webp" if name.endswith(".webp") else "image/jpeg"
    return FileResponse(path, media_type=media, headers=headers)


async def jobs(request: Request) -> Response:
    offset = _query_int(request, "offset", 0, 0, 10**9)
    limit = _query_int(request, "limit", JOBS_PAGE, 1, MAX_JOBS_PAGE)
    found, total = await services_of(request).db.list_jobs(
        offset, limit, owner=request_owner(request)
    )
    return JSONResponse(
        {
            "offset": offset,
            "limit": limit,
            "total": total,
            "jobs": [payloads.status_object(j) | payloads.links(j) for j in found],
        }
    )


async def livez(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    services = services_of(request)
    checks: dict[str, Any] = {}
    try:
        await services.db.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"failing: {exc}"
    writable = await run_in_threadpool(services.storage.writable)
    checks["storage"] = "ok" if writable else "not writable"
    checks["workers"] = "ok" if services.runner.alive else "not running"
    phase = services.lifecycle.phase
    checks["service"] = "ok" if phase is Phase.READY else phase.value
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        200 if ready else 503)  # fmt: skip


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


async def job_of(request: Request) -> Job:
    """The job named by the path, if the caller may see it: every /{request_id} route's way in.

    With API keys on, another key's job is "not found" too, so ids cannot be probed.
    """
    job = await services_of(request).db.get_job(
        request.path_params["request_id"], owner=request_owner(request)
    )
    if job is None:
        raise not_found("the request id")
    return job


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = whole_number(request.query_params, name, low, high)
    return default if value is None else value


ROUTES = [
    Route("/api/upload", upload, methods=["POST"]),
    Route("/api/status/{request_id}", status),
    Route("/api/details/{request_id}", details),
    Route("/api/download/{request_id}", download),
    Route("/api/image/{filename}", image),
    Route("/api/jobs", jobs),
    Route("/livez", livez),
    Route("/readyz", readyz),
    Route("/api/webhook/{request_id}/redeliver", redeliver_webhook, methods=["POST"]),
]
