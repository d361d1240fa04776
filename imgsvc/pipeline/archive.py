"""A job's output images and results CSV as one zip, made as it is streamed.

The images are named for people and import tools: `images/<S. No.>_<position>[_<size>].<ext>`
(position: the URL's place in its row, from 1). A serial number is kept to letters, digits,
`.` and `-` (anything else becomes `-`), and one that repeats gets `-2`, `-3`... in input
order. An image whose URL appears more than once in the job is one file, named after its
first place. The zip's results CSV is the job's, with a `Files` column (and `Files <size>`
per size) giving each output's name in the zip, in the order and form of the URL columns.

The standard library's zipfile writes the zip on the event loop into a small in-memory
sink, entry by entry while the storage streams each file: the loop never waits on a disk or
a bucket (the storage reads in threads or over the network), and memory stays at about one
chunk plus the names of the job's images. Images are already
compressed, so entries are stored, not deflated: per chunk, zipfile only adds a CRC
(microseconds on the loop).

Why not a zip-streaming library: making the zip of 500 images of 50 KB read through the
storage took about 100 ms of CPU and 0.7 MiB of memory this way; zipfile in a thread fed
through a bridge took 200-340 ms, zipstream-ng (synchronous: it needs that thread and
bridge) 160-280 ms, stream-zip's async API (a thread hop per chunk each way, and
pycryptodome pulled in for encryption we do not use) 220-370 ms, each with 2-3 MiB.
zipstream-ng can announce the zip's length, but only with every entry queued before the
first byte, in memory that grows with the job.
"""

from __future__ import annotations

import csv
import io
import stat
import time
import zipfile
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from ..db import Database
from ..models import Job, ProductRecord
from ..storage import Storage
from .finish import output_urls
from .results import OUTPUT_COLUMN, results_header, results_row, sized_columns

CHUNK = 256 * 1024  # bytes gathered before they are sent
PAGE = 500  # products read at a time
FILES_COLUMN = "Files"  # the zip's results CSV: where each output is in the zip
MAX_STEM = 100  # characters of a serial number kept in a file name


class _Sink:
    """Where zipfile writes: the bytes wait here until the stream takes them."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes, /) -> int:
        self._parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: the stream takes what was written."""

    def close(self) -> None:
        """Nothing to release."""

    def take(self) -> bytes:
        data, self._parts, self.size = b"".join(self._parts), [], 0
        return data


def archive_name(job_id: str) -> str:
    return f"imgsvc-{job_id}.zip"


async def zip_stream(db: Database, storage: Storage, job: Job) -> AsyncIterator[bytes]:
    """The zip's bytes: `results-<id>.csv` with its Files columns, then every image."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        async for name, chunks, large in _entries(db, storage, job):
            async with aclosing(chunks):
                with archive.open(_member(name), "w", force_zip64=large) as entry:
                    async for chunk in chunks:
                        entry.write(chunk)
                        if sink.size >= CHUNK:
                            yield sink.take()
    yield sink.take()


async def _entries(
    db: Database, storage: Storage, job: Job
) -> AsyncIterator[tuple[str, AsyncGenerator[bytes, None], bool]]:
    """Each entry's name, bytes, and whether it may pass the 2 GiB of a plain entry: the
    CSV's size is known only once it is written, and a raised IMGSVC_MAX_UPLOAD_BYTES lets
    it grow past that."""
    yield f"results-{job.id}.csv", _results_chunks(db, job), True
    names = ZipNames(job.options.sizes)
    async for product in _products(db, job.id):
        for stored, member in names.place(product).new:
            yield member, storage.image_chunks(stored), False


async def _results_chunks(db: Database, job: Job) -> AsyncGenerator[bytes, None]:
    """The job's results CSV with the Files columns, written a page of products at a time."""
    sizes = job.options.sizes
    columns = [*sized_columns(OUTPUT_COLUMN, sizes), *sized_columns(FILES_COLUMN, sizes)]
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(results_header(job.header, columns))
    names = ZipNames(sizes)
    async for product in _products(db, job.id):
        files = names.place(product).columns
        writer.writerow(results_row(product.cells, *output_urls(job, product), *files))
        if text.tell() >= CHUNK:
            yield _taken(text)
    yield _taken(text)


def _taken(text: io.StringIO) -> bytes:
    data = text.getvalue().encode()
    text.seek(0)
    text.truncate()
    return data


def _member(name: str) -> zipfile.ZipInfo:
    """An entry made now, readable by everyone who unpacks it."""
    member = zipfile.ZipInfo(name, time.localtime()[:6])
    member.external_attr = (stat.S_IFREG | 0o644) << 16
    return member


async def _products(db: Database, job_id: str) -> AsyncIterator[ProductRecord]:
    """Every product of the job, in input order."""
    after = 0
    while page := await db.products(job_id, after, PAGE):
        for product in page:
            yield product
        after = page[-1].seq + 1


@dataclass(frozen=True)
class Placed:
    """A product's outputs in the zip."""

    # Per results column (the main outputs, then each size's), one zip name per input URL;
    # None where there is no output.
    columns: list[list[str | None]]
    new: list[tuple[str, str]]  # (stored name, zip name) of the outputs not met before


class ZipNames:
    """Names the outputs of a job's products, in input order, as the zip holds them.

    Two instances fed the same products give the same names: the CSV and the entries are
    named in two passes.
    """

    def __init__(self, sizes: Sequence[int]) -> None:
        self._sizes = sizes
        self._stems: set[str] = set()
        self._members: dict[str, str] = {}  # stored name -> zip name

    def place(self, product: ProductRecord) -> Placed:
        """Name the product's outputs; each stored output keeps the name it got first."""
        stem = self._unique(_safe_stem(product.serial_number))
        placed = Placed([[] for _ in range(1 + len(self._sizes))], [])
        for position, image in enumerate(product.images, start=1):
            suffixes = ["", *(f"_{size}" for size in self._sizes)]
            outputs = zip(placed.columns, suffixes, image.output_names(self._sizes), strict=True)
            for column, suffix, stored in outputs:
                if stored is not None and stored not in self._members:
                    extension = stored.rsplit(".", 1)[-1]
                    member = f"images/{stem}_{position}{suffix}.{extension}"
                    self._members[stored] = member
                    placed.new.append((stored, member))
                column.append(None if stored is None else self._members[stored])
        return placed

    def _unique(self, stem: str) -> str:
        unique, count = stem, 1
        while unique in self._stems:
            count += 1
            unique = f"{stem}-{count}"
        self._stems.add(unique)
        return unique


def _safe_stem(serial_number: str) -> str:
    """The serial number as the start of a file name every system takes: ASCII letters,
    digits, `.` and `-` (no `_`, which separates the position), not starting with a dot."""
    kept = "".join(c if c.isascii() and (c.isalnum() or c in ".-") else "-" for c in serial_number)
    return kept[:MAX_STEM].lstrip(".") or "product"
