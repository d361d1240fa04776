"""Read and validate the input CSV: its encoding, its header, its rows in batches.

Pure and synchronous (stdlib ``csv`` only): the upload route runs it in a worker thread.
A row's cell of URLs is checked by url_cells.py; problems are collected as csv_problems.py
says.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..models import Product
from .csv_problems import MAX_PROBLEMS, CsvError, CsvProblem, Problems, fatal, show
from .url_cells import cell_problems, split_urls

__all__ = [
    "MAX_PROBLEMS",
    "CsvError",
    "CsvLimits",
    "CsvProblem",
    "CsvStream",
    "ParsedCsv",
    "Product",
    "parse_csv",
    "read_csv",
]

# Products are handed on in batches of about this many URLs: enough that storing a batch
# costs few round trips, few enough that an upload is never held whole as objects.
BATCH_URLS = 20_000

# Header cells are compared after dropping case, spaces and punctuation.
_SERIAL_KEYS = frozenset({"sno", "serialnumber", "serialno", "srno"})
_NAME_KEYS = frozenset({"productname"})
_URL_KEYS = frozenset({"inputimageurls", "inputimageurl", "imageurls"})
_OUTPUT_KEYS = frozenset({"outputimageurls", "outputimageurl"})
_REQUIRED = (
    (_SERIAL_KEYS, "S. No."),
    (_NAME_KEYS, "Product Name"),
    (_URL_KEYS, "Input Image Urls"),
)
_NOT_KEY = re.compile(r"[^a-z0-9]+")

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
# A line as csv reads it (newline=""), its break kept; the last may have none.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


@dataclass(frozen=True)
class CsvLimits:
    """Limits on one upload; the service fills them from its settings."""

    max_rows: int = 100_000
    max_urls_per_row: int = 100
    max_field_bytes: int = 1_048_576
    max_url_length: int = 2048


@dataclass(frozen=True)
class ParsedCsv:
    """A valid upload: the header to echo in the results and every product in file order."""

    header: tuple[str, ...]
    products: list[Product]

    @property
    def total_images(self) -> int:
        """How many image URLs the products hold (duplicates counted)."""
        return sum(len(product.urls) for product in self.products)


@dataclass(frozen=True)
class CsvStream:
    """An upload whose header was read: its products come in batches, in file order, as
    the rest is read.

    Iterating `batches` raises CsvError, with every problem found, once the file has been
    read; after the first problem no further batch is handed on (the rows are still
    checked), so whatever stored the batches before must be undone.
    """

    header: tuple[str, ...]
    batches: Iterator[list[Product]]


@dataclass(frozen=True)
class _Layout:
    """Where the columns are, in the raw row and in the cells we keep."""

    header: tuple[str, ...]  # kept header cells
    width: int  # raw header width (trailing empty cells trimmed)
    raw_urls: int  # URL column index in the raw row, where spilled URLs start
    drop: frozenset[int]  # raw indexes of an "Output Image Urls" column
    serial: int
    name: int
    urls: int


def read_csv(data: bytes, limits: CsvLimits) -> CsvStream:
    """Decode an uploaded CSV and read its header; raise CsvError when either is wrong."""
    text = _decode(data)
    problems = Problems()
    csv.field_size_limit(limits.max_field_bytes)  # process-wide; every caller sets its own
    records = _records(text, limits, problems)
    first = next(records, None)
    if first is None and not problems.items:
        problems.add(None, None, "the file is empty (it has only blank lines)")
    layout = None if first is None else _layout(*first, problems)
    if layout is None:
        raise problems.error()
    return CsvStream(layout.header, _batches(records, layout, limits, problems))


def parse_csv(data: bytes, limits: CsvLimits) -> ParsedCsv:
    """Decode, parse and validate a whole CSV; raise CsvError with every problem found."""
    stream = read_csv(data, limits)
    return ParsedCsv(stream.header, [p for batch in stream.batches for p in batch])


def _decode(data: bytes) -> str:
    """UTF-8 text without BOM, or a CsvError with the one problem that stops everything."""
    if not data.removeprefix(codecs.BOM_UTF8):
        raise fatal(None, "the file is empty")
    wide = _wide_encoding(data)
    if wide:
        raise fatal(None, f"the file is {wide}, not UTF-8; save it as UTF-8 (CSV UTF-8)")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = _line_at(data, nul)
        raise fatal(line, f"line {line} contains a NUL byte; the file looks binary, not CSV")
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = _line_at(body, exc.start)
        message = (
            f"line {line} is not valid UTF-8 (byte 0x{body[exc.start]:02X}); save the file"
            " as UTF-8 (it may be Windows-1252 or Latin-1)"
        )
        raise fatal(line, message) from None


def _wide_encoding(data: bytes) -> str | None:
    """'UTF-16' or 'UTF-32' when a BOM says so, or NULs fall on every other byte."""
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            return name
    sample = data[:4096]
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    # ASCII text in UTF-16 has a NUL in every other byte and none in between.
    many = max(even, odd)
    return (
        "UTF-16"
        if len(sample) >= 4 and many * 3 >= len(sample) // 2 and min(even, odd) * 10 <= many
        else None
    )


def _line_at(data: bytes, index: int) -> int:
    """The 1-based line holding byte ``index``, counting line breaks as ``csv`` does."""
    return len(_LINE_BREAK.findall(data, 0, index)) + 1


def _records(text: str, limits: CsvLimits, problems: Problems) -> Iterator[tuple[int, list[str]]]:
    """Non-blank records with the line each starts on; a csv error is recorded and ends it."""
    reader = csv.reader(_lines(text))
    start = end = 0
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.add(line, None, _csv_error_message(str(exc), line, limits))
            return
        if "".join(row).strip():
            start, end = line, reader.line_num
            yield line, row
    # Outside strict mode a quote left open swallows the rest of the file into one cell.
    if end > start and _quote_left_open(text):
        message = f'a quoted cell in the record starting on line {start} is never closed (")'
        problems.add(start, None, message + "; everything after it was read as one cell")


def _lines(text: str) -> Iterator[str]:
    # Not io.StringIO: it holds the text as 4 bytes a character, 200 MB for a 50 MB upload.
    return (match.group() for match in _LINE.finditer(text))


def _csv_error_message(error: str, line: int, limits: CsvLimits) -> str:
    if "field larger than field limit" in error:
        limit = _size(limits.max_field_bytes)
        return f"a field on line {line} is larger than {limit} (IMGSVC_MAX_FIELD_BYTES)"
    return f"line {line} is not valid CSV ({error})"


def _quote_left_open(text: str) -> bool:
    try:
        for _ in csv.reader(_lines(text), strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _size(count: int) -> str:
    if count % 1_048_576 == 0:
        return f"{count // 1_048_576} MiB"
    return f"{count // 1024} KiB" if count % 1024 == 0 else f"{count:,} bytes"


def _layout(line: int, header: list[str], problems: Problems) -> _Layout | None:
    """Locate the required columns; record what is wrong with the header and give None."""
    while header and not header[-1].strip():
        header = header[:-1]  # a trailing comma would otherwise swallow spilled URLs
    keys = [_NOT_KEY.sub("", cell.lower()) for cell in header]
    drop = frozenset(i for i, key in enumerate(keys) if key in _OUTPUT_KEYS)
    kept = [i for i in range(len(header)) if i not in drop]
    found: list[int] = []
    missing: list[str] = []
    duplicated = False
    for names, canonical in _REQUIRED:
        where = [i for i in kept if keys[i] in names]
        if len(where) > 1:
            duplicated = True
            numbers = " and ".join(str(i + 1) for i in where)
            problems.add(line, header[where[1]], f"this column appears twice (columns {numbers})")
        found.extend(where[:1])
        missing.extend([] if where else [canonical])
    if missing:
        problems.add(line, None, _missing_message(line, missing, header))
    if missing or duplicated:
        return None
    serial, name, urls = (kept.index(i) for i in found)
    cells = tuple(header[i] for i in kept)
    return _Layout(cells, len(header), found[2], drop, serial, name, urls)


def _missing_message(line: int, missing: list[str], header: list[str]) -> str:
    names = ", ".join(f'"{name}"' for name in missing)
    shown = ", ".join(f'"{show(cell, 40)}"' for cell in header[:20])
    message = f"the header on line {line} lacks the required column(s) {names}; found: {shown}"
    if any(cell.strip().lower().startswith(("http://", "https://")) for cell in header):
        message += "; the first row looks like data, and the file needs a header row"
    return message


def _batches(
    records: Iterator[tuple[int, list[str]]],
    layout: _Layout,
    limits: CsvLimits,
    problems: Problems,
) -> Iterator[list[Product]]:
    batch: list[Product] = []
    rows = urls = 0
    for line, row in records:
        if rows >= limits.max_rows:
            message = (
                f"the file has more than {limits.max_rows:,} product rows;"
                f" the limit is {limits.max_rows:,} (IMGSVC_MAX_ROWS)"
            )
            problems.add(line, None, message)
            break
        product = _product(line, row, layout, limits, problems)
        rows += 1
        if problems.full:
            break
        if problems.items:
            continue  # nothing more will be stored: the rest is only checked
        batch.append(product)
        urls += len(product.urls)
        if urls >= BATCH_URLS:
            yield batch
            batch, urls = [], 0
    if not rows and not problems.items:
        problems.add(None, None, "the file has a header but no product rows")
    if problems.items:
        raise problems.error()
    if batch:
        yield batch


def _product(
    line: int, row: list[str], layout: _Layout, limits: CsvLimits, problems: Problems
) -> Product:
    cells = _cells(row, layout)
    serial, name = cells[layout.serial].strip(), cells[layout.name].strip()
    if not serial:
        problems.add(line, layout.header[layout.serial], "the serial number is empty")
    if not name:
        problems.add(line, layout.header[layout.name], "the product name is empty")
    cell = cells[layout.urls]
    urls = split_urls(cell)
    column = layout.header[layout.urls]
    for message in cell_problems(cell, urls, limits.max_urls_per_row, limits.max_url_length):
        problems.add(line, column, message)
    return Product(line, serial, name, urls, tuple(cells))


def _cells(row: list[str], layout: _Layout) -> list[str]:
    """Fit a row to the header: spilled URL fields become one cell, short rows are padded."""
    width = layout.width
    if len(row) > width:
        while len(row) > width and not row[-1].strip():
            row = row[:-1]  # trailing commas are not URLs
        start, stop = layout.raw_urls, layout.raw_urls + 1 + len(row) - width
        spilled = ",".join(cell.strip() for cell in row[start:stop] if cell.strip())
        row = [*row[:start], spilled, *row[stop:]]
    if len(row) < width:
        row = row + [""] * (width - len(row))
    if layout.drop:
        row = [cell for i, cell in enumerate(row) if i not in layout.drop]
    return row
