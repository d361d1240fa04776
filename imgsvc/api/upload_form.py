"""Turning an upload request into a validated CSV and job options, within the size limit."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from ..config import Settings
from ..errors import ApiError, bad_field
from ..models import JobOptions, OutputFormat
from ..pipeline.netguard import AddressPolicy, BlockedAddressError, refuse_numeric_spelling

CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/vnd.ms-excel")
MAX_DIMENSION = 20_000
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
MAX_SIZES = 5  # extra outputs per image; each costs an encode and storage
MAX_QUALITY = 95  # above it JPEG files grow a lot for no visible gain
MAX_FILENAME = 255  # characters of the uploaded file's name kept (most file systems' limit)
# How a yes-or-no field may be spelled, in any case.
YES = ("true", "1", "yes")
NO = ("false", "0", "no")


@dataclass(frozen=True)
class Upload:
    """What the client sent: the CSV's bytes, its file name, and the job's settings."""

    data: bytes
    options: JobOptions
    webhook_url: str | None
    filename: str | None  # the multipart file's name; a raw text/csv body has none


async def read_upload(request: Request, settings: Settings) -> Upload:
    """Read a multipart form or a raw CSV body, refusing it with 413 once it passes the limit."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    limited = Request(request.scope, _limited(request.receive, limit))
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    filename = None
    if content_type == "multipart/form-data":
        data, fields, filename = await _read_form(limited)
    elif content_type in CSV_TYPES:
        data, fields = await limited.body(), request.query_params
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the CSV as multipart/form-data with a `file` field, or as a text/csv body",
        )
    return Upload(
        data,
        parse_options(fields, settings.jpeg_quality),
        parse_webhook_url(fields.get("webhook_url"), settings.address_policy),
        filename,
    )


async def _read_form(request: Request) -> tuple[bytes, Mapping[str, str], str | None]:
    form = await request.form(max_files=1, max_fields=20)
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise ApiError(400, "missing_file", "the form has no `file` field with the CSV file")
    data = await file.read()
    await file.close()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    await form.close()
    return data, fields, base_name(file.filename)


def base_name(filename: str | None) -> str | None:
    """The file's own name, without the folders some browsers send (`C:\\fakepath\\a.csv`)
    and without control characters; None when nothing is left."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable())[:MAX_FILENAME].strip()
    return name or None


def parse_options(fields: Mapping[str, str], default_quality: int) -> JobOptions:
    """quality, max_dimension, format, progressive, sizes and reuse, each checked with a message
    naming the field."""
    quality = whole_number(fields, "quality", 1, MAX_QUALITY)
    max_dimension = whole_number(fields, "max_dimension", 1, MAX_DIMENSION)
    fmt = (fields.get("format") or "jpeg").strip().lower()
    fmt = {"jpg": "jpeg"}.get(fmt, fmt)
    if fmt not in tuple(OutputFormat):
        raise bad_field("format", f"{fmt!r} is not one of: {', '.join(OutputFormat)}")
    progressive = yes_or_no(fields, "progressive", default=False)
    sizes = parse_sizes(fields.get("sizes") or "")
    reuse = yes_or_no(fields, "reuse", default=True)
    return JobOptions(
        quality or default_quality, max_dimension, OutputFormat(fmt), progressive, sizes, reuse
    )


def parse_sizes(raw: str) -> tuple[int, ...]:
    """`sizes`: up to MAX_SIZES longest sides in px, comma-separated, each once; else 400
    invalid_field naming what is wrong."""
    if not raw.strip():
        return ()
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) > MAX_SIZES:
        raise bad_field("sizes", f"at most {MAX_SIZES} sizes, not {len(parts)}")
    sizes: list[int] = []
    for part in parts:
        size = _size(part)
        if size in sizes:
            raise bad_field("sizes", f"{size} is given twice")
        sizes.append(size)
    return tuple(sizes)


def _size(part: str) -> int:
    if not part:
        raise bad_field("sizes", "a size is missing between two commas")
    if not WHOLE_NUMBER.fullmatch(part):
        raise bad_field("sizes", f"{part[:20]!r} is not a whole number of pixels")
    # Compared as text first: int() refuses numbers of more than 4,300 digits.
    digits = part.lstrip("+-").lstrip("0")
    if part.startswith("-") or not digits:
        raise bad_field("sizes", f"{part[:20]} is not a size: a size is at least 1 pixel")
    if len(digits) > len(str(MAX_DIMENSION)) or int(digits) > MAX_DIMENSION:
        raise bad_field("sizes", f"{part[:20]} is more than the limit of {MAX_DIMENSION} pixels")
    return int(digits)


def parse_webhook_url(value: str | None, policy: AddressPolicy) -> str | None:
    """The webhook URL if it is one imgsvc can call; an address literal must be allowed."""
    if not value or not value.strip():
        return None
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
        raise bad_field("webhook_url", f"{url[:100]!r} is not an http or https URL with a host")
    try:
        refuse_numeric_spelling(parts.hostname)
        ipaddress.ip_address(parts.hostname)
    except BlockedAddressError as exc:
        raise ApiError(400, "blocked_address", f"webhook_url: {exc}") from None
    except ValueError:
        return url  # a host name: its address is checked at each delivery
    try:
        policy.check(parts.hostname)
    except BlockedAddressError as exc:
        raise ApiError(400, "blocked_address", f"webhook_url: {exc}") from None
    return url


def whole_number(fields: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    """The field as a number from `low` to `high`, None when absent; else 400 invalid_field."""
    raw = (fields.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise bad_field(name, f"{raw[:20]!r} is not a whole number from {low} to {high}")
    return int(raw)


def yes_or_no(fields: Mapping[str, str], name: str, *, default: bool) -> bool:
    """The field as a boolean (true/false, 1/0, yes/no), `default` when absent; else 400
    invalid_field."""
    raw = (fields.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in YES + NO:
        raise bad_field(name, f"{raw[:20]!r} is not one of: {', '.join(YES + NO)}")
    return raw in YES


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _too_large(limit)
        return message

    return counted


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"the upload is larger than the limit of {limit:,} bytes (IMGSVC_MAX_UPLOAD_BYTES)",
    )
