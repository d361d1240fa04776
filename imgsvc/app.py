"""The ASGI application: one lifespan that owns everything long-lived, and the error shape."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .api.auth import ApiKeyAuth
from .api.routes import ROUTES
from .api.services import Services
from .api.watchers import JobWatchers
from .config import Settings
from .db import Database, open_database
from .errors import ApiError
from .lifecycle import DataDirInUse, Lifecycle, owning, process_name
from .logs import RequestIdMiddleware
from .pipeline import compress, retention
from .pipeline.fetch import Fetcher, FetchLimits
from .pipeline.produce import Pipeline
from .pipeline.queue import JobRunner
from .pipeline.webhooks import start_sender
from .storage import Storage, open_storage

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def create_app(settings: Settings | None = None) -> Starlette:
    """The service as an ASGI app; nothing starts until the lifespan runs."""
    settings = settings or Settings.from_env()

    lifecycle = Lifecycle(settings.shutdown_grace)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        try:
            with owning(settings.data_dir):
                async with _services(settings, lifecycle) as services:
                    yield {"services": services}
        except DataDirInUse as exc:
            log.error("imgsvc cannot start: %s", exc)
            raise

    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(RequestIdMiddleware),
            *([Middleware(ApiKeyAuth, keys=settings.api_keys)] if settings.api_keys else []),
        ],
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.lifecycle = lifecycle  # the server's signal handling drains through it
    return app


@asynccontextmanager
async def _services(settings: Settings, lifecycle: Lifecycle) -> AsyncIterator[Services]:
    """Everything long-lived; each part is closed even when starting a later one or closing
    another fails, so a failed start or stop never leaves threads that keep the process up."""
    async with AsyncExitStack() as stack:
        storage = open_storage(settings)
        await storage.start()
        stack.push_async_callback(storage.close)
        db = await open_database(settings)
        stack.push_async_callback(db.close)
        pool = ThreadPoolExecutor(settings.cpu_workers, thread_name_prefix="imgsvc-cpu")
        stack.push_async_callback(asyncio.to_thread, pool.shutdown, True, cancel_futures=True)
        compress.keep_memory_for(settings.cpu_workers)
        fetcher = _fetcher(settings)
        stack.push_async_callback(fetcher.close)
        owner = process_name()
        sender = await start_sender(settings, db, owner)
        stack.push_async_callback(sender.stop)
        runner = JobRunner(
            _pipeline(settings, db, storage, fetcher, pool),
            settings.job_workers,
            owner,
            settings.lease_seconds,
        )
        stack.push_async_callback(runner.stop)
        await runner.start()
        if settings.retention_days:
            cleaner = asyncio.create_task(
                retention.keep_clean(db, storage, settings.retention_days)
            )
            stack.push_async_callback(_cancel, cleaner)
        stack.push_async_callback(lifecycle.drain)
        lifecycle.ready(runner)
        watchers = JobWatchers(db)
        stack.push_async_callback(watchers.close)
        yield Services(settings, db, storage, runner, lifecycle, watchers)


def _fetcher(settings: Settings) -> Fetcher:
    limits = FetchLimits(
        max_bytes=settings.max_image_bytes,
        timeout=settings.fetch_timeout,
        max_redirects=settings.max_redirects,
        retries=settings.fetch_retries,
    )
    return Fetcher(
        settings.address_policy,
        limits,
        concurrency=settings.fetch_concurrency,
        per_host=settings.fetch_per_host,
        bytes_in_flight=settings.fetch_bytes,
    )


def _pipeline(
    settings: Settings,
    db: Database,
    storage: Storage,
    fetcher: Fetcher,
    pool: ThreadPoolExecutor,
) -> Pipeline:
    return Pipeline(
        db=db,
        storage=storage,
        fetcher=fetcher,
        pool=pool,
        max_pixels=settings.max_image_pixels,
    )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    detail = {404: "no such endpoint", 405: "this endpoint does not take that method"}.get(
        exc.status_code, str(exc.detail)
    )
    return JSONResponse({"detail": detail, "code": code}, exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": "the server failed to handle this request", "code": "internal_error"}, 500
    )
