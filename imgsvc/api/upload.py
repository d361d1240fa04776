"""POST /api/upload: a CSV in, a job stored and queued, 202 with its request id."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import gil
from ..db import KeyTaken
from ..errors import ApiError
from ..models import Job, JobStatus
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
    try:
        parsed = await run_in_threadpool(
            parse.parse_csv, received.data, services.settings.csv_limits
        )
    except parse.CsvError as exc:
        raise ApiError(
            400, "invalid_csv", exc.detail, [p.as_dict() for p in exc.problems]
        ) from None
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
        header=parsed.header,
        total_products=len(parsed.products),
        total_images=parsed.total_images,
        processed_products=0,
        processed_images=0,
        succeeded_images=0,
        failed_images=0,
        csv_filename=received.filename,
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
    services.runner.wake()
    answer = payloads.upload_answer(job)
    return JSONResponse(answer, 202, headers={"Location": answer["status_url"]})
