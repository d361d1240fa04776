"""Reading a job: its status, its details, the job list, the results CSV, output images."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..pipeline.webhooks import webhook_object
from . import payloads
from .auth import request_owner
from .services import ended_job, job_of, query_int, services_of

DETAILS_PAGE = 1000  # products per details page, at most and by default
JOBS_PAGE, MAX_JOBS_PAGE = 50, 500  # jobs per list page: by default, at most


async def status(request: Request) -> Response:
    return JSONResponse(payloads.status_object(await job_of(request)))


async def details(request: Request) -> Response:
    job = await job_of(request)
    offset = query_int(request, "offset", 0, 0, job.total_products)
    limit = query_int(request, "limit", DETAILS_PAGE, 1, DETAILS_PAGE)
    services = services_of(request)
    db = services.db
    products = await db.products(job.id, offset, limit)
    in_flight = await db.in_flight(job.id)
    webhook = webhook_object(job, await db.latest_delivery(job.id) if job.webhook_url else None)

    def answer() -> Response:
        body = payloads.details_object(job, products, offset, limit, in_flight)
        return JSONResponse(body | {"webhook": webhook})

    # A page holds up to 1,000 products of up to 100 images each: build and encode it in
    # a thread, not on the event loop.
    return await run_in_threadpool(answer)


async def download(request: Request) -> Response:
    job = ended_job(await job_of(request), "the results CSV")
    return await services_of(request).storage.results_response(job.id)


async def image(request: Request) -> Response:
    name = request.path_params["filename"]
    return await services_of(request).storage.image_response(name, request)


async def jobs(request: Request) -> Response:
    offset = query_int(request, "offset", 0, 0, 10**9)
    limit = query_int(request, "limit", JOBS_PAGE, 1, MAX_JOBS_PAGE)
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
