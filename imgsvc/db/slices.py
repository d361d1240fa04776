"""How a job's work is cut: its distinct URLs, in input order, into slices of a fixed size.

Every occurrence of a URL falls in the same slice, so a URL is produced by one worker once,
and a slice is small enough that a job behind a huge one waits for one slice, not the job.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import Product

SLICE_SIZE = 500  # distinct URLs per slice


def slice_numbers(products: Sequence[Product]) -> dict[str, int]:
    """The slice of each distinct URL of a job."""
    numbers: dict[str, int] = {}
    for product in products:
        for url in product.urls:
            if url not in numbers:
                numbers[url] = len(numbers) // SLICE_SIZE
    return numbers
