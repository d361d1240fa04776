"""The process's life: one owner per data folder, readiness, and a graceful stop.

A first SIGTERM or Ctrl-C drains: uploads are refused with 503, /readyz says 503, status
and downloads keep answering, images in flight get IMGSVC_SHUTDOWN_GRACE seconds to finish,
the rest stays pending for the next start; then uvicorn stops and the process exits 0.
A second signal stops at once (still safe: nothing is lost, the next start redoes more).
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import logging
import os
import secrets
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from .errors import ApiError

if TYPE_CHECKING:
    from .pipeline.queue import JobRunner

log = logging.getLogger(__name__)


def process_name() -> str:
    """This process as the leases it holds name it: host, pid and a random part (a pid is
    reused after a restart; a lease of the process before must not look like ours)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class DataDirInUse(Exception):
    """Another process owns the data folder."""


@contextmanager
def owning(data_dir: Path) -> Iterator[None]:
    """Hold the data folder's lock for the block; DataDirInUse if another process has it.

    The lock is an flock on `imgsvc.lock`: the kernel drops it when the owner dies, even by
    kill -9, so a crash never leaves a stale lock behind."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "imgsvc.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DataDirInUse(
                f"the data folder {data_dir} is in use by another imgsvc process (pid {owner}); "
                "stop it first or give this one its own IMGSVC_DATA_DIR. imgsvc is one "
                "process per data folder: do not run it with uvicorn --workers"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def check_free(data_dir: Path) -> None:
    """Raise DataDirInUse now, before the server starts, if another process owns the folder."""
    with owning(data_dir):
        pass


class Phase(StrEnum):
    STARTING = "starting"
    READY = "ready"
    STOPPING = "shutting down"


class Lifecycle:
    """Where the process is in its life; shared by the lifespan, the routes and the server."""

    def __init__(self, grace: float) -> None:
        self.phase = Phase.STARTING
        self.grace = grace
        self._runner: JobRunner | None = None
        self._drain: asyncio.Future[None] | None = None

    def ready(self, runner: JobRunner) -> None:
        self._runner = runner
        self.phase = Phase.READY

    async def drain(self) -> None:
        """Take no new work and give images in flight the grace period (once)."""
        self.phase = Phase.STOPPING
        if self._runner is None:
            return
        if self._drain is None:
            log.info("shutting down: finishing images in flight (up to %ss)", self.grace)
            self._drain = asyncio.ensure_future(self._runner.drain(self.grace))
        await asyncio.shield(self._drain)

    def refuse_when_stopping(self) -> None:
        """503 for requests that would start new work while the process shuts down."""
        if self.phase is Phase.STOPPING:
            raise ApiError(
                503,
                "shutting_down",
                "the service is shutting down and takes no new work; retry in a few seconds",
                headers={"Retry-After": "5"},
            )


class GracefulServer(uvicorn.Server):
    """uvicorn's server, whose first SIGTERM or Ctrl-C drains the job runner before stopping."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle) -> None:
        super().__init__(config)
        self._lifecycle = lifecycle
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or self._stopping is not None or not self.started:
            super().handle_exit(sig, frame)  # a second signal, or one during start: at once
            return
        # Called by the signal handler: hand over to the loop, the only safe thing to do here.
        # The handler interrupts whatever code runs, so it gets a context of its own: the
        # stop's log lines must not carry the request id of a request that happened to run.
        self._loop.call_soon_threadsafe(self._begin_stop, sig, context=contextvars.Context())

    def _begin_stop(self, sig: int) -> None:
        if self._stopping is None:
            log.info("received %s", signal.Signals(sig).name)
            self._stopping = asyncio.create_task(self._stop())

    async def _stop(self) -> None:
        await self._lifecycle.drain()
        self.should_exit = True
