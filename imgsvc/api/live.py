"""Watching a job and taking its results home: progress as server-sent events, the zip.

Progress events carry the job's status object whenever it changes. sse-starlette writes
and sends them; it also answers HEAD with the headers alone, where a plain streaming
response would go on polling the job and hold the connection until the job ended.

The job runner commits progress in batches about every half second, so reading the job
row at that pace shows every step a person could see. Each process reads a watched job
once per interval and fans the read out to every stream on it, so the cost grows with the
jobs watched, not the watchers, and it works the same for a job run by another process
sharing the database. A stream's opening check of the job (is it there, may this caller
see it) is served from the same shared read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import not_found
from ..models import Job
from ..pipeline import archive
from .auth import request_owner
from .payloads import links, status_object
from .services import ended_job, job_of, services_of
from .watchers import POLL_INTERVAL, JobWatchers

KEEPALIVE = 15.0  # seconds of silence after which a comment keeps proxies from closing
RETRY_MS = 2000  # how long a browser's EventSource waits before reconnecting
SEP = "\n"  # lines end in LF, as the stream has always sent them (the library's default: CRLF)
RETRY = ServerSentEvent(retry=RETRY_MS, sep=SEP).encode()
KEEPALIVE_COMMENT = ServerSentEvent(comment="keepalive", sep=SEP).encode()
WATCHED_JOBS = 256  # jobs whose latest events are kept encoded for the next stream


def sse(event: str, data: Any) -> bytes:
    """One server-sent event: a name and a JSON body on one `data:` line."""
    return ServerSentEvent(json.dumps(data, separators=(",", ":")), event=event, sep=SEP).encode()


class Read:
    """A job as JobWatchers read it, as a cache key. Every stream on a job is handed the
    same object for a read, so it is compared by identity: hashing a whole Job would cost
    about what the cache saves, and fail on any field that cannot be hashed."""

    __slots__ = ("job",)

    def __init__(self, job: Job) -> None:
        self.job = job  # held, so no other object takes its id while it is cached

    def __hash__(self) -> int:
        return id(self.job)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Read) and other.job is self.job


# Each read of a watched job is turned into its events once, not once per stream on it
# (26 us a stream per read here): 300 streams on a job cost one encoding.
@lru_cache(maxsize=WATCHED_JOBS)
def progress_event(read: Read) -> bytes:
    """The `progress` event of a read: the job's status object."""
    return sse("progress", status_object(read.job))


@lru_cache(maxsize=WATCHED_JOBS)
def done_event(read: Read) -> bytes:
    """The `done` event of the ended job: its status object and the links to the results."""
    return sse("done", status_object(read.job) | links(read.job))


async def progress_events(
    watchers: JobWatchers, job_id: str, interval: float = POLL_INTERVAL
) -> AsyncIterator[bytes]:
    """`progress` events with the status object as it changes, then one `done` at the end
    (the status object with the links to the results)."""
    yield RETRY
    last = b""
    quiet = 0.0
    async for job in watchers.follow(job_id):
        if job is None:  # removed while watched (retention)
            yield sse("error", {"detail": "the request id was not found", "code": "not_found"})
            return
        read = Read(job)
        event = progress_event(read)
        if event != last:
            yield event
            last, quiet = event, 0.0
        elif quiet >= KEEPALIVE:
            yield KEEPALIVE_COMMENT
            quiet = 0.0
        if job.status.terminal:
            yield done_event(read)
            return
        quiet += interval


async def watched_job(request: Request, watchers: JobWatchers) -> Job:
    """The job named by the path, if the caller may see it, as its watchers last read it:
    300 streams opening on a job at once cost one read of it, not 300 reads queued ahead
    of every other request's. The owner comes with that read, so with API keys on another
    key's job is "not found" here too."""
    found = await watchers.latest(request.path_params["request_id"])
    owner = request_owner(request)
    if found is None or (owner is not None and found[1] != owner):
        raise not_found("the request id")
    return found[0]


async def progress(request: Request) -> Response:
    watchers = services_of(request).watchers
    job = await watched_job(request, watchers)
    return EventSourceResponse(
        progress_events(watchers, job.id),
        # The library adds X-Accel-Buffering: no, so that proxies (nginx) pass each event
        # on as it comes; no-cache rather than its no-store, as the stream always said.
        headers={"Cache-Control": "no-cache"},
        sep=SEP,
        # No ping of the library's every 15 s: progress_events sends a keepalive only
        # when the stream has been quiet that long, so a moving job's stream stays as it was.
        ping=0,
    )


async def zip_archive(request: Request) -> Response:
    job = ended_job(await job_of(request), "the archive")
    services = services_of(request)
    return StreamingResponse(
        archive.zip_stream(services.db, services.storage, job),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{archive.archive_name(job.id)}"'},
    )
