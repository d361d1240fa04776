"""Watching a job and taking its results home: progress as server-sent events, the zip.

Progress events carry the job's status object whenever it changes.

The job runner commits progress in batches about every half second, so reading the job
row at that pace shows every step a person could see, costs one indexed read per stream,
and works the same for a job run by another process sharing the database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..db import Database
from ..pipeline import archive
from .payloads import links, status_object
from .services import ended_job, job_of, services_of

POLL_INTERVAL = 0.5  # seconds between reads of the job row
KEEPALIVE = 15.0  # seconds of silence after which a comment keeps proxies from closing
RETRY_MS = 2000  # how long a browser's EventSource waits before reconnecting


def sse(event: str, data: Any) -> str:
    """One server-sent event: a name and a JSON body on one `data:` line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def progress_events(
    db: Database, job_id: str, interval: float = POLL_INTERVAL
) -> AsyncIterator[str]:
    """`progress` events with the status object as it changes, then one `done` at the end
    (the status object with the links to the results)."""
    yield f"retry: {RETRY_MS}\n\n"
    last: dict[str, Any] | None = None
    quiet = 0.0
    while True:
        job = await db.get_job(job_id)
        if job is None:  # removed while watched (retention)
            yield sse("error", {"detail": "the request id was not found", "code": "not_found"})
            return
        body = status_object(job)
        if body != last:
            yield sse("progress", body)
            last, quiet = body, 0.0
        elif quiet >= KEEPALIVE:
            yield ": keepalive\n\n"
            quiet = 0.0
        if job.status.terminal:
            yield sse("done", body | links(job))
            return
        await asyncio.sleep(interval)
        quiet += interval


async def progress(request: Request) -> Response:
    job = await job_of(request)
    stream = progress_events(services_of(request).db, job.id)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        # Proxies (nginx) must pass each event on as it comes, not buffer the stream.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def zip_archive(request: Request) -> Response:
    job = ended_job(await job_of(request), "the archive")
    services = services_of(request)
    return StreamingResponse(
        archive.zip_stream(services.db, services.storage, job.id),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{archive.archive_name(job.id)}"'},
    )
