"""Storage in an S3-compatible bucket: <prefix>/images/<name>, <prefix>/results/<job id>.csv.

An image or CSV is first written into a temp file in the data folder's tmp/ (each process
keeps its own), then uploaded from there; S3 makes an object visible only once it is whole,
and obstore sends a large file as a multipart upload. obstore (Rust, over Apache Arrow's
object_store) reads the credentials from AWS_* itself, so they never pass through imgsvc.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO, TypeVar

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import not_found
from . import IMAGE_NAME, JOB_ID, cache_headers, media_type, not_modified, writable_names

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config

T = TypeVar("T")

CHUNK = 64 * 1024  # bytes handed on at a time when streaming (obstore's default is 10 MiB)
READY_SECONDS = 5.0  # a readiness probe waits no longer for the bucket
READY_KEY = "ready"  # the empty object /readyz writes to prove the bucket takes writes


class S3Storage:
    """The `Storage` of a bucket (and prefix), with temp files in `tmp` on the local disk."""

    def __init__(self, url: str, endpoint: str | None, tmp: Path) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        # With an endpoint (MinIO and most self-hosted stores) the bucket is in the path.
        # Given here, the endpoint and allow_http win over AWS_ENDPOINT and AWS_ALLOW_HTTP,
        # which obstore would otherwise read: plain HTTP only when the endpoint says so.
        config: S3Config = (
            {"endpoint": endpoint, "virtual_hosted_style_request": False} if endpoint else {}
        )
        options: ClientConfig = {"allow_http": bool(endpoint and endpoint.startswith("http://"))}
        self._store = S3Store(
            bucket, prefix=prefix.strip("/") or None, config=config, client_options=options
        )
        self._tmp = tmp

    async def start(self) -> None:
        await asyncio.to_thread(_fresh_folder, self._tmp)

    async def close(self) -> None:
        """Nothing to release: obstore's connections go with the store."""

    async def ready(self) -> bool:
        try:
            async with asyncio.timeout(READY_SECONDS):
                await asyncio.to_thread(_writable, self._tmp)
                await obstore.put_async(self._store, READY_KEY, b"")
        except (OSError, BaseError, TimeoutError):
            return False
        return True

    async def put_images(
        self, names: Sequence[str], encode: Callable[[Sequence[BinaryIO]], T], pool: Executor
    ) -> tuple[T, list[int]]:
        writable_names(*names)
        # Temp files are named after the images: a name is written by one task at a time.
        parts = [self._tmp / f"{name}.part" for name in names]
        try:
            future = pool.submit(_encode_into, parts, encode)
            try:
                result, sizes = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                # As in the data folder: an encode that has started cannot be stopped.
                await asyncio.wait([asyncio.wrap_future(future)])
                raise
            uploads = (
                self._upload(f"images/{name}", part, media_type(name))
                for name, part in zip(names, parts, strict=True)
            )
            await _to_the_end(_all(uploads))
        finally:
            for part in parts:
                part.unlink(missing_ok=True)
        return result, sizes

    async def copy_image(self, source: str, target: str) -> None:
        writable_names(target)
        try:
            await _to_the_end(
                obstore.copy_async(self._store, self._image_key(source), f"images/{target}")
            )
        except FileNotFoundError:
            raise
        except (OSError, BaseError) as exc:
            raise OSError(f"the bucket did not copy {source}: {_first_line(exc)}") from None

    async def put_results(self, job_id: str, write: Callable[[TextIO], None]) -> None:
        key = self._results_key(job_id)
        with self._temp_file() as part:
            await asyncio.to_thread(_write_text, part, write)
            await _to_the_end(self._upload(key, part, "text/csv; charset=utf-8"))

    async def image_response(self, name: str, request: Request) -> Response:
        headers = cache_headers(name)
        try:
            key = self._image_key(name)
            unchanged = not_modified(request, name)
            if unchanged or request.method == "HEAD":
                # No body to send: whether the object is there, and its size, is all it takes.
                meta = await obstore.head_async(self._store, key)
                headers["Content-Length"] = str(meta["size"])
                return unchanged or Response(media_type=media_type(name), headers=headers)
            got = await obstore.get_async(self._store, key)
        except FileNotFoundError:
            raise not_found("the image") from None
        headers["Content-Length"] = str(got.meta["size"])
        return StreamingResponse(
            got.stream(min_chunk_size=CHUNK), media_type=media_type(name), headers=headers
        )

    async def results_response(self, job_id: str) -> Response:
        try:
            got = await obstore.get_async(self._store, self._results_key(job_id))
        except FileNotFoundError:
            raise not_found("the results CSV") from None
        headers = {
            "Content-Length": str(got.meta["size"]),
            "Content-Disposition": f'attachment; filename="results-{job_id}.csv"',
        }
        return StreamingResponse(
            got.stream(min_chunk_size=CHUNK), media_type="text/csv", headers=headers
        )

    async def image_chunks(self, name: str) -> AsyncGenerator[bytes, None]:
        got = await obstore.get_async(self._store, self._image_key(name))
        async for chunk in got.stream(min_chunk_size=CHUNK):
            yield chunk

    async def results_chunks(self, job_id: str) -> AsyncGenerator[bytes, None]:
        got = await obstore.get_async(self._store, self._results_key(job_id))
        async for chunk in got.stream(min_chunk_size=CHUNK):
            yield chunk

    async def remove_images(self, names: Iterable[str]) -> None:
        keys = [f"images/{n}" for n in names if IMAGE_NAME.fullmatch(n)]
        if keys:  # one request per 1,000 keys
            await self._remove(keys)

    async def remove_results(self, job_id: str) -> None:
        await self._remove([self._results_key(job_id)])

    async def _upload(self, key: str, part: Path, content_type: str) -> None:
        try:
            await obstore.put_async(
                self._store, key, part, attributes={"Content-Type": content_type}
            )
        except (OSError, BaseError) as exc:
            raise OSError(f"the bucket did not store {key}: {_first_line(exc)}") from None

    async def _remove(self, keys: list[str]) -> None:
        try:
            await obstore.delete_async(self._store, keys)
        except (OSError, BaseError) as exc:
            raise OSError(f"the bucket did not remove {keys[0]}: {_first_line(exc)}") from None

    def _image_key(self, name: str) -> str:
        """The key of image `name`; FileNotFoundError for a name that is not one of ours."""
        if not IMAGE_NAME.fullmatch(name):
            raise FileNotFoundError(f"not an image name: {name!r}")
        return f"images/{name}"

    def _results_key(self, job_id: str) -> str:
        if not JOB_ID.fullmatch(job_id):
            raise FileNotFoundError(f"not a job id: {job_id!r}")
        return f"results/{job_id}.csv"

    @contextmanager
    def _temp_file(self) -> Iterator[Path]:
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
        os.close(fd)  # the writer opens it by name, in a thread
        part = Path(name)
        try:
            yield part
        finally:
            part.unlink(missing_ok=True)


async def _to_the_end(work: Awaitable[None]) -> None:
    """Await `work`, and if cancelled, still let it end first: an upload under way may be
    stored whatever happens to its request, and a caller must be able to remove it after."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


async def _all(uploads: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the uploads side by side and raise the first failure once every one has ended."""
    outcomes = await asyncio.gather(*uploads, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _encode_into(
    parts: Sequence[Path], encode: Callable[[Sequence[BinaryIO]], T]
) -> tuple[T, list[int]]:
    with ExitStack() as files:
        handles = [files.enter_context(part.open("w+b")) for part in parts]
        result = encode(handles)
        return result, [handle.tell() for handle in handles]


def _write_text(part: Path, write: Callable[[TextIO], None]) -> None:
    with part.open("w", encoding="utf-8", newline="") as handle:
        write(handle)


def _fresh_folder(folder: Path) -> None:
    """`folder`, made empty: temp files a crash left behind are dropped."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def _writable(folder: Path) -> None:
    with tempfile.TemporaryFile(dir=folder):
        pass


def _first_line(exc: BaseException) -> str:
    # obstore's message goes on with a debug dump of the request; the first line names
    # the method, the URL and the answer, never the credentials.
    return str(exc).split("\n", 1)[0]
