"""What every route shares: the lifespan's services, the job a path names, paging numbers."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from ..config import Settings
from ..db import Database
from ..errors import ApiError, not_found
from ..lifecycle import Lifecycle
from ..models import Job
from ..pipeline.queue import JobRunner
from ..storage import Storage
from .auth import request_owner
from .upload_form import whole_number
from .watchers import JobWatchers


@dataclass(frozen=True)
class Services:
    """What the lifespan made, as the routes see it on `request.state.services`."""

    settings: Settings
    db: Database
    storage: Storage
    runner: JobRunner
    lifecycle: Lifecycle
    watchers: JobWatchers


def services_of(request: Request) -> Services:
    services: Services = request.state.services
    return services


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


def ended_job(job: Job, what: str) -> Job:
    """`job` once it has ended; 409 not_finished (naming `what`) until then."""
    if not job.status.terminal:
        raise ApiError(
            409,
            "not_finished",
            f"the job is {job.status.value}; {what} is ready when it has finished",
        )
    return job


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = whole_number(request.query_params, name, low, high)
    return default if value is None else value
