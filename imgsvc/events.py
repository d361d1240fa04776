"""Live progress as server-sent events: the job's status object whenever it changes.

The job runner commits progress in batches about every half second, so reading the job
row at that pace shows every step a person could see, costs one indexed read per stream,
and works the same for a job run by another process sharing the database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from .db import Database
from .payloads import links, status_object

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
