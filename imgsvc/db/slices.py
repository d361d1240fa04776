"""How a job's work is cut: its distinct URLs, in input order, into slices of a fixed size.

Every occurrence of a URL falls in the same slice, so a URL is produced by one worker once,
and a slice is small enough that a job behind a huge one waits for one slice, not the job.

An upload is stored as it is read, a batch of products at a time, and never held whole:
a `Slicer` numbers each batch's URLs, remembering only which hashes it has seen, and the
database tells the slice of a URL that may have appeared in an earlier batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..models import Product

SLICE_SIZE = 500  # distinct URLs per slice
# One byte per slot of the seen-hashes table (16 MiB): with the most URLs an upload can
# hold (1.7 million), under 11% of the slots are taken, so few new URLs are looked up.
SEEN_SLOTS = 1 << 24

# The job as its images name it: its id (PostgreSQL) or its number (SQLite).
JobKey = str | int
ImageRow = tuple[JobKey, int, int, str, int]  # job, product seq, position, url, slice


class Slicer:
    """Numbers a job's URLs into slices as its products come in, batch after batch.

    A URL first seen takes the next place among the job's distinct URLs; a URL seen before
    keeps its slice. Which URLs were seen is kept as a table of hash slots: a URL whose
    slot is taken may be a repeat, and its slice is asked of the database (a false alarm
    costs one look-up, never a wrong slice).
    """

    def __init__(self) -> None:
        self.distinct = 0  # URLs numbered so far
        self._seen = bytearray(SEEN_SLOTS)

    @property
    def slices(self) -> int:
        """How many slices the URLs numbered so far fill."""
        return -(-self.distinct // SLICE_SIZE)

    def maybe_seen(self, products: Iterable[Product]) -> set[str]:
        """The batch's URLs that may have appeared before it or earlier in it; afterwards
        every URL of the batch counts as seen."""
        seen, mask = self._seen, SEEN_SLOTS - 1
        repeats: set[str] = set()
        for product in products:
            for url in product.urls:
                slot = hash(url) & mask
                if seen[slot]:
                    repeats.add(url)
                else:
                    seen[slot] = 1
        return repeats

    def image_rows(
        self,
        job: JobKey,
        first_seq: int,
        products: Sequence[Product],
        maybe_seen: set[str],
        stored: dict[str, int],
    ) -> Iterator[ImageRow]:
        """The batch's image rows, its products numbered from `first_seq`: `maybe_seen` is
        what `maybe_seen` gave for the batch, `stored` the slices the database holds for
        those URLs (updated in place)."""
        for seq, product in enumerate(products, first_seq):
            for position, url in enumerate(product.urls):
                slice_no = stored.get(url)
                if slice_no is None:
                    slice_no = self.distinct // SLICE_SIZE
                    self.distinct += 1
                    if url in maybe_seen:  # it may come again in this batch
                        stored[url] = slice_no
                yield job, seq, position, url, slice_no
