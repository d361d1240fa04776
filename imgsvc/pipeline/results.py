"""The results CSV: the input's cells, then the output URLs, safe to open in a spreadsheet.

Pure and synchronous (stdlib ``csv`` only): callers run it in a thread.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import IO

OUTPUT_COLUMN = "Output Image Urls"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# A product's added cells: per added column, one entry per input URL (None: no output).
Outputs = Sequence[Sequence[str | None]]


def _formula_safe(cell: str) -> str:
    """Keep spreadsheets from running a cell as a formula (CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def sized_columns(name: str, sizes: Sequence[int]) -> list[str]:
    """`name`, then `name <size>` for each of the job's sizes, in their order."""
    return [name, *(f"{name} {size}" for size in sizes)]


def results_header(header: Sequence[str], columns: Sequence[str] = (OUTPUT_COLUMN,)) -> list[str]:
    """The input header followed by the added columns, formula-safe."""
    return [_formula_safe(cell) for cell in [*header, *columns]]


def results_row(cells: Sequence[str], *outputs: Sequence[str | None]) -> list[str]:
    """The input cells plus one cell per added column, its entries in input order and
    comma-separated; an image without an output leaves its place empty."""
    joined = [",".join(entry or "" for entry in column) for column in outputs]
    return [_formula_safe(cell) for cell in [*cells, *joined]]


def write_results(
    out: IO[str],
    header: Sequence[str],
    rows: Iterable[tuple[Sequence[str], Outputs]],
    columns: Sequence[str] = (OUTPUT_COLUMN,),
) -> None:
    """Write the results CSV: header, then one row per product, CRLF line ends."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(results_header(header, columns))
    writer.writerows(results_row(cells, *outputs) for cells, outputs in rows)
