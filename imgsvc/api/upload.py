"""POST /api/upload: a CSV in, a job stored and queued, 202 with its request id."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import gil
from ..db import KeyTaken
from ..errors import ApiError
from ..models import Job, JobStatus, Product
from ..pipeline import parse
from . import idempotency, payloads
from .auth import request_owner
from .services import services_of
from .upload_form import read_upload


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
    limits = services.settings.csv_limits
    try:
        stream = await run_in_threadpool(parse.read_csv, received.data, limits)
    except parse.CsvError as exc:
        raise _invalid_csv(exc) from None
    stamp = datetime.now(UTC)
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
        header=stream.header,
        total_products=0,  # counted as the products are stored
        total_images=0,
        processed_products=0,
        processed_images=0,
        succeeded_images=0,
        failed_images=0,
        csv_filename=received.filename,
    )
    services.lifecycle.refuse_when_stopping()
    try:
        job = await services.db.create_job(
            job, read_ahead(stream.batches), (key, digest) if key else None, owner=owner
        )
    except parse.CsvError as exc:  # found past the header: nothing was kept
        raise _invalid_csv(exc) from None
    except KeyTaken:  # the same key, sent again while the first upload was being stored
        assert key is not None
        earlier = await idempotency.earlier_answer(services.db, key, digest)
        assert earlier is not None
        return earlier
    services.runner.wake()
    answer = payloads.upload_answer(job)
    return JSONResponse(answer, 202, headers={"Location": answer["status_url"]})


def _invalid_csv(exc: parse.CsvError) -> ApiError:
    return ApiError(400, "invalid_csv", exc.detail, [p.as_dict() for p in exc.problems])


async def read_ahead(batches: Iterator[list[Product]]) -> AsyncIterator[list[Product]]:
    """The batches, each read in a thread while the one before is stored."""
    following = asyncio.ensure_future(run_in_threadpool(next, batches, None))
    try:
        while (batch := await following) is not None:
            following = asyncio.ensure_future(run_in_threadpool(next, batches, None))
            yield batch
    finally:
        # Stopped early (storing failed): the thread's read ends before the stream does.
        await asyncio.gather(following, return_exceptions=True)
