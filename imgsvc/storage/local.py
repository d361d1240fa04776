"""The data folder's file layout, and writes that are atomic: a reader sees all or nothing.

Every method here is synchronous file I/O; callers run them in threads.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import string
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")

SHARDS = string.ascii_letters + string.digits + "-_"  # the characters a name starts with
IMAGE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\.(jpg|webp)")


def image_name(job_id: str, url: str, extension: str) -> str:
    """The output file name of `url` in a job: unguessable without the job id, and stable,
    so a URL is stored once per job and redoing it after a crash replaces the same file."""
    digest = hashlib.sha256(f"{job_id}\0{url}".encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=") + "." + extension


class Storage:
    """Files under one data folder: the database, output images, results CSVs, temp files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images = root / "images"
        self.results = root / "results"
        self.tmp = root / "tmp"

    @property
    def database(self) -> Path:
        return self.root / "imgsvc.db"

    def prepare(self) -> None:
        """Create the folders and drop temp files a crash may have left behind."""
        for folder in (self.root, self.images, self.results):
            folder.mkdir(parents=True, exist_ok=True)
        # One folder per first character of a name: 64 folders made once here keep any one
        # folder's size in check without a mkdir on the path of every image.
        for shard in SHARDS:
            (self.images / shard).mkdir(exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()

    def image_path(self, name: str) -> Path:
        """Where an output image lives; ValueError for any name that is not one of ours."""
        if not IMAGE_NAME.fullmatch(name):
            raise ValueError(f"not an image name: {name!r}")
        return self.images / name[0] / name

    def results_path(self, job_id: str) -> Path:
        return self.results / f"{job_id}.csv"

    def write_image(self, name: str, write: Callable[[IO[bytes]], T]) -> tuple[T, int]:
        """Run `write` on a temp file, then move it into place; returns its result and size.

        The temp file is named after the image: a name is written by one task at a time,
        and a fixed name spares the random-name search of mkstemp on this hot path.
        """
        target = self.image_path(name)
        part = self.tmp / f"{name}.part"
        try:
            with part.open("wb") as handle:
                result = write(handle)
                size = handle.tell()
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, target)
        return result, size

    def write_results(self, job_id: str, write: Callable[[IO[str]], None]) -> None:
        with (
            self._replacing(self.results_path(job_id)) as part,
            part.open("w", encoding="utf-8", newline="") as handle,
        ):
            write(handle)

    def remove_results(self, job_id: str) -> None:
        self.results_path(job_id).unlink(missing_ok=True)

    def remove_image(self, name: str) -> None:
        self.image_path(name).unlink(missing_ok=True)

    def webhook_secret(self, make: Callable[[], str]) -> str:
        """The data folder's webhook secret, first created with `make()` if there is none.

        The file is readable by its owner only and appears whole or not at all (a hard link
        of a finished temp file), so two processes starting at once agree on one secret.
        """
        path = self.root / "webhook-secret"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.root, suffix=".part")  # mode 0600
            part = Path(name)
            try:
                with os.fdopen(fd, "w", encoding="ascii") as handle:
                    handle.write(make() + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                os.link(part, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            finally:
                part.unlink(missing_ok=True)
        return path.read_text(encoding="ascii").strip()

    def remove_images(self, names: Iterable[str]) -> None:
        for name in names:
            self.remove_image(name)

    def writable(self) -> bool:
        """Whether a file can be created in the data folder right now."""
        try:
            with tempfile.TemporaryFile(dir=self.tmp):
                return True
        except OSError:
            return False

    @contextmanager
    def _replacing(self, target: Path) -> Iterator[Path]:
        """A temp path in the data folder that replaces `target` if the block succeeds."""
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
        os.close(fd)
        part = Path(name)
        try:
            yield part
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
