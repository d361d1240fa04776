"""The results CSV: the input's cells, then the output URLs, safe to open in a spreadsheet.

Pure and synchronous (stdlib ``csv`` only): callers run it in a thread.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import IO

OUTPUT_COLUMN = "Output Image Urls"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _formula_safe(cell: str) -> str:
    """Keep spreadsheets from running a cell as a formula (CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def results_header(header: Sequence[str]) -> list[str]:
    """The input header followed by ``Output Image Urls``, formula-safe."""
    return [_formula_safe(cell) for cell in header] + [OUTPUT_COLUMN]


def results_row(cells: Sequence[str], output_urls: Sequence[str | None]) -> list[str]:
    """The input cells plus one cell of output URLs in input order; a failed image is empty."""
    joined = ",".join(url or "" for url in output_urls)
    return [_formula_safe(cell) for cell in cells] + [_formula_safe(joined)]


def write_results(
    out: IO[str],
    header: Sequence[str],
    rows: Iterable[tuple[Sequence[str], Sequence[str | None]]],
) -> None:
    """Write the results CSV: header, then one row per product, CRLF line ends."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(results_header(header))
    writer.writerows(results_row(cells, urls) for cells, urls in rows)
