"""Storage in the data folder: images/<first char>/<name>, results/<job id>.csv, tmp/.

Every write goes into a temp file in tmp/ (the same file system) and is renamed into place,
so a reader sees a whole file or none, even after kill -9. File I/O runs in threads.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import string
import tempfile
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO, TypeVar

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from ..errors import not_found
from . import IMAGE_NAME, JOB_ID, cache_headers, media_type, not_modified, writable_names

T = TypeVar("T")

SHARDS = string.ascii_letters + string.digits + "-_"  # the characters a name starts with
CHUNK = 256 * 1024  # bytes read at a time when streaming a file


class LocalStorage:
    """The `Storage` of one data folder (the folder also holds the database and the lock)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._images = root / "images"
        self._results = root / "results"
        self._tmp = root / "tmp"

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare)

    async def close(self) -> None:
        """Nothing to release: every file is opened and closed by the call that uses it."""

    async def ready(self) -> bool:
        return await asyncio.to_thread(self._writable)

    async def put_images(
        self, names: Sequence[str], encode: Callable[[Sequence[BinaryIO]], T], pool: Executor
    ) -> tuple[T, list[int]]:
        writable_names(*names)
        future = pool.submit(self._write_images, names, encode)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # The cancel dropped the write if it had not started; one that has cannot be
            # stopped, so wait for it: the caller may remove what was written.
            await asyncio.wait([asyncio.wrap_future(future)])
            raise

    async def copy_image(self, source: str, target: str) -> None:
        copy = asyncio.ensure_future(asyncio.to_thread(self._link_image, source, target))
        try:
            await asyncio.shield(copy)
        except asyncio.CancelledError:
            # A link under way cannot be stopped: wait for it, so the caller may remove it.
            await asyncio.wait([copy])
            raise

    async def put_results(self, job_id: str, write: Callable[[TextIO], None]) -> None:
        await asyncio.to_thread(self._write_results, self._results_path(job_id), write)

    async def image_response(self, name: str, request: Request) -> Response:
        try:
            path = self._image_path(name)
            found = await asyncio.to_thread(os.stat, path)
        except OSError:
            raise not_found("the image") from None
        if not stat.S_ISREG(found.st_mode):
            raise not_found("the image")
        return not_modified(request, name) or FileResponse(
            path, media_type=media_type(name), headers=cache_headers(name), stat_result=found
        )

    async def results_response(self, job_id: str) -> Response:
        try:
            path = self._results_path(job_id)
            found = await asyncio.to_thread(os.stat, path)
        except OSError:
            raise not_found("the results CSV") from None
        return FileResponse(
            path, media_type="text/csv", filename=f"results-{job_id}.csv", stat_result=found
        )

    async def image_chunks(self, name: str) -> AsyncGenerator[bytes, None]:
        async for chunk in _chunks(self._image_path(name)):
            yield chunk

    async def results_chunks(self, job_id: str) -> AsyncGenerator[bytes, None]:
        async for chunk in _chunks(self._results_path(job_id)):
            yield chunk

    async def remove_images(self, names: Iterable[str]) -> None:
        paths = [self._images / n[0] / n for n in names if IMAGE_NAME.fullmatch(n)]
        await asyncio.to_thread(_remove, paths)

    async def remove_results(self, job_id: str) -> None:
        await asyncio.to_thread(_remove, [self._results_path(job_id)])

    def _prepare(self) -> None:
        for folder in (self.root, self._images, self._results):
            folder.mkdir(parents=True, exist_ok=True)
        # One folder per first character of a name: 64 folders made once here keep any one
        # folder's size in check without a mkdir on the path of every image.
        for shard in SHARDS:
            (self._images / shard).mkdir(exist_ok=True)
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir()

    def _writable(self) -> bool:
        try:
            with tempfile.TemporaryFile(dir=self._tmp):
                return True
        except OSError:
            return False

    def _image_path(self, name: str) -> Path:
        """Where image `name` lives; FileNotFoundError for a name that is not one of ours."""
        if not IMAGE_NAME.fullmatch(name):
            raise FileNotFoundError(f"not an image name: {name!r}")
        return self._images / name[0] / name

    def _results_path(self, job_id: str) -> Path:
        if not JOB_ID.fullmatch(job_id):
            raise FileNotFoundError(f"not a job id: {job_id!r}")
        return self._results / f"{job_id}.csv"

    def _write_images(
        self, names: Sequence[str], encode: Callable[[Sequence[BinaryIO]], T]
    ) -> tuple[T, list[int]]:
        # Temp files are named after the images: a name is written by one task at a time,
        # and a fixed name spares the random-name search of mkstemp on this hot path.
        parts = [self._tmp / f"{name}.part" for name in names]
        try:
            with ExitStack() as files:
                handles = [files.enter_context(part.open("w+b")) for part in parts]
                result = encode(handles)
                sizes = [handle.tell() for handle in handles]
            for part, name in zip(parts, names, strict=True):
                os.replace(part, self._image_path(name))
        except BaseException:
            _remove(parts)
            raise
        return result, sizes

    def _link_image(self, source: str, target: str) -> None:
        # A second name for the same bytes, linked in tmp/ and renamed into place like any
        # write. Every write makes a new file, so no write through one name shows in the other.
        writable_names(target)
        origin, part = self._image_path(source), self._tmp / f"{target}.part"
        part.unlink(missing_ok=True)
        try:
            try:
                os.link(origin, part)
            except FileNotFoundError:
                raise
            except OSError:  # too many links to one file, or a file system without links
                shutil.copyfile(origin, part)
            os.replace(part, self._image_path(target))
        finally:
            # rename() leaves both names when they already were links to the same file.
            part.unlink(missing_ok=True)

    def _write_results(self, target: Path, write: Callable[[TextIO], None]) -> None:
        with (
            self._replacing(target) as part,
            part.open("w", encoding="utf-8", newline="") as handle,
        ):
            write(handle)

    @contextmanager
    def _replacing(self, target: Path) -> Iterator[Path]:
        """A temp path in the data folder that replaces `target` if the block succeeds."""
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
        os.close(fd)
        part = Path(name)
        try:
            yield part
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    # One trip to a thread opens the file and reads a chunk: an image is then usually whole.
    # A short read is the end of a regular file.
    handle, chunk = await asyncio.to_thread(_open_reading, path)
    with handle:
        while chunk:
            yield chunk
            if len(chunk) < CHUNK:
                return
            chunk = await asyncio.to_thread(handle.read, CHUNK)


def _open_reading(path: Path) -> tuple[BinaryIO, bytes]:
    handle = path.open("rb")
    try:
        return handle, handle.read(CHUNK)
    except BaseException:
        handle.close()
        raise


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
