"""Where output images and results CSVs live: one interface, one backend per kind of store.

Every read or write of an output image or a results CSV goes through `Storage`; the rest of
the service never sees a path or a bucket. `open_storage` picks the backend from Settings.

Output names are made here, once: `[A-Za-z0-9_-]+.(jpg|webp|avif)`, unguessable and stable; an
image's output for one of the job's sizes is its name with `_<size>` before the extension. A
backend serves those names and nothing else, whatever it is asked for.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from concurrent.futures import Executor
from typing import BinaryIO, Protocol, TextIO, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..models import Job, OutputFormat

T = TypeVar("T")

IMAGE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\.(jpg|webp|avif)")
MEDIA_TYPES = {f.extension: f.content_type for f in OutputFormat}
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
IMMUTABLE = "public, max-age=31536000, immutable"  # a name's bytes never change


def writable_names(*names: str) -> None:
    """Refuse (ValueError) to write under a name that is not an image name: every name a
    backend writes passes here first, so nothing lands outside the images."""
    for name in names:
        if not IMAGE_NAME.fullmatch(name):
            raise ValueError(f"not an image name: {name!r}")


def image_name(job_id: str, url: str, extension: str) -> str:
    """The output name of `url` in a job: unguessable without the job id, and stable, so a
    URL is stored once per job and redoing it after a crash replaces the same image."""
    digest = hashlib.sha256(f"{job_id}\0{url}".encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=") + "." + extension


def rendition_name(name: str, size: int) -> str:
    """The output name of image `name` made for one of the job's sizes (`size` px)."""
    stem, extension = name.rsplit(".", 1)
    return f"{stem}_{size}.{extension}"


def output_names(name: str, sizes: Iterable[int]) -> list[str]:
    """An image's output names: the main one, then one per size in the order given."""
    return [name, *(rendition_name(name, size) for size in sizes)]


def image_names(job: Job, urls: Iterable[str]) -> list[str]:
    """Every output name `urls` have (or would have) in `job`, its sizes' included."""
    extension, sizes = job.options.format.extension, job.options.sizes
    return [n for url in urls for n in output_names(image_name(job.id, url, extension), sizes)]


class Storage(Protocol):
    """Output images and results CSVs, wherever they are kept.

    Writes are atomic: a reader sees a whole image or CSV, or none. A write the store cannot
    take (full, refused, unreachable) raises OSError; reading what is not stored raises
    FileNotFoundError. Names that are not ours are never stored, served or streamed.
    """

    async def start(self) -> None:
        """Make the store ready (and drop temp files a crash left behind)."""

    async def close(self) -> None:
        """Release what `start` took."""

    async def ready(self) -> bool:
        """Whether an image could be stored right now (for /readyz)."""

    async def put_images(
        self, names: Sequence[str], encode: Callable[[Sequence[BinaryIO]], T], pool: Executor
    ) -> tuple[T, list[int]]:
        """Store images `names` as `encode` writes them, in one call, into real files
        opened in the same order and readable too (one may be copied into another), run in
        `pool` (Pillow releases the GIL while it encodes into a file); its result and the
        stored sizes, in that order. One call makes every output of one decoded image.

        If `encode` raises, nothing is stored and its exception propagates. A cancelled call
        returns only once `encode` has ended: after it, nothing more appears in storage.
        """

    async def copy_image(self, source: str, target: str) -> None:
        """Store image `target` with the bytes of the stored image `source`, without moving
        them through this process (a hard link, a copy inside the bucket): the two stay
        independent, so removing one never touches the other. FileNotFoundError when
        `source` is not stored. As with put_image, a cancelled call returns only once the
        copy has ended."""

    async def put_results(self, job_id: str, write: Callable[[TextIO], None]) -> None:
        """Store the job's results CSV as `write` writes it (run in a thread: it may block)."""

    async def image_response(self, name: str, request: Request) -> Response:
        """Answer `request` for image `name`: ETag, long immutable cache, HEAD, 304 when the
        client has it; ApiError not_found when the name is not ours or not stored."""

    async def results_response(self, job_id: str) -> Response:
        """The job's results CSV as a download (`results-<id>.csv`); ApiError not_found if
        there is none."""

    def image_chunks(self, name: str) -> AsyncGenerator[bytes, None]:
        """The stored image's bytes, a chunk at a time (close it when leaving early)."""

    def results_chunks(self, job_id: str) -> AsyncGenerator[bytes, None]:
        """The job's results CSV's bytes, a chunk at a time."""

    async def remove_images(self, names: Iterable[str]) -> None:
        """Remove these images; names not stored are skipped."""

    async def remove_results(self, job_id: str) -> None:
        """Remove the job's results CSV, if there is one."""


def open_storage(settings: Settings) -> Storage:
    """The backend `settings` ask for: a bucket (IMGSVC_STORAGE_URL), else the data folder."""
    # A backend's module is imported only when it is used.
    if settings.storage_url:
        from .s3 import S3Storage

        return S3Storage(settings.storage_url, settings.s3_endpoint, settings.data_dir / "tmp")
    from .local import LocalStorage

    return LocalStorage(settings.data_dir)


def cache_headers(name: str) -> dict[str, str]:
    """An image's validator and caching: its name is its version, its bytes never change."""
    return {"ETag": f'"{name.split(".")[0]}"', "Cache-Control": IMMUTABLE}


def not_modified(request: Request, name: str) -> Response | None:
    """A 304 when the request's If-None-Match names the image's ETag, else None."""
    headers = cache_headers(name)
    tags = request.headers.get("if-none-match", "").split(",")
    if {"*", headers["ETag"]} & {t.strip().removeprefix("W/") for t in tags}:
        return Response(status_code=304, headers=headers)
    return None


def media_type(name: str) -> str:
    """The Content-Type of an image, by its name's extension."""
    return MEDIA_TYPES[name.rsplit(".", 1)[-1]]
