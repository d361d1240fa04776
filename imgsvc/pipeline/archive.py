"""A job's output images and results CSV as one zip, built in a thread and streamed.

zipfile writes into a pipe whose chunks cross to the event loop through a small bounded
stream: the loop never blocks on disk, memory stays at a few chunks whatever the job's
size, and a client that goes away stops the thread at its next write. Images are already
compressed, so entries are stored, not deflated.
"""

from __future__ import annotations

import asyncio
import contextlib
import zipfile
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.streams.memory import MemoryObjectSendStream

from ..db import Database, products_from_thread
from ..storage.local import Storage

CHUNK = 256 * 1024  # bytes handed to the loop at a time
BUFFERED_CHUNKS = 4


class _Pipe:
    """A write-only file object that passes full chunks to the loop (blocking when it lags)."""

    def __init__(self, send: MemoryObjectSendStream[bytes]) -> None:
        self._send = send
        self._buffer = bytearray()

    def write(self, data: bytes, /) -> int:
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            chunk, self._buffer = bytes(self._buffer), bytearray()
            anyio.from_thread.run(self._send.send, chunk)

    def close(self) -> None:
        """Nothing to release: the stream is closed by whoever made it."""


def archive_name(job_id: str) -> str:
    return f"imgsvc-{job_id}.zip"


async def zip_stream(db: Database, storage: Storage, job_id: str) -> AsyncIterator[bytes]:
    """The zip's bytes: `results-<id>.csv`, then `images/<output name>` for every image."""
    send, receive = anyio.create_memory_object_stream[bytes](BUFFERED_CHUNKS)
    names = _output_names(db, job_id, asyncio.get_running_loop())
    writer = asyncio.create_task(anyio.to_thread.run_sync(_write_zip, storage, job_id, names, send))
    try:
        async with receive:
            async for chunk in receive:
                yield chunk
    finally:
        # A client that left closed `receive`: the thread's next send fails and it ends.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await writer


def _write_zip(
    storage: Storage, job_id: str, names: Iterator[str], send: MemoryObjectSendStream[bytes]
) -> None:
    try:
        pipe = _Pipe(send)
        with zipfile.ZipFile(pipe, "w", zipfile.ZIP_STORED) as archive:
            archive.write(storage.results_path(job_id), f"results-{job_id}.csv")
            for name in names:
                archive.write(storage.image_path(name), f"images/{name}")
        pipe.flush()
    finally:
        anyio.from_thread.run(send.aclose)


def _output_names(db: Database, job_id: str, loop: asyncio.AbstractEventLoop) -> Iterator[str]:
    """Every output image of the job once, in input order (iterated in the zip's thread)."""
    seen: set[str] = set()
    for product in products_from_thread(db, job_id, loop):
        for image in product.images:
            if image.output_name and image.output_name not in seen:
                seen.add(image.output_name)
                yield image.output_name
