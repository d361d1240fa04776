"""A row's cell of image URLs: split into URLs, counted, and each checked to be a printable
http(s) URL with a host within the length limit."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .csv_problems import show

# Zero-width characters sneak in from copy-paste and are invisible in a spreadsheet.
_BAD_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")
# Most URLs are plain http(s)://host/path: these patterns prove a URL, or a whole cell of
# them, fine without the cost of urlsplit (which doubles the time to read 100,000 rows).
_URL_CHAR = "[^\\s,\x00-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]"
_PORT = "[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]"
_HOST = "[A-Za-z0-9][A-Za-z0-9.-]*"
_PLAIN = f"[Hh][Tt][Tt][Pp][Ss]?://{_HOST}(?::(?:{_PORT}))?(?:[/?#]{_URL_CHAR}*)?"
_PLAIN_URL = re.compile(_PLAIN)
_PLAIN_CELL = re.compile(f"[\\s,]*{_PLAIN}(?:[\\s,]+{_PLAIN})*[\\s,]*")


def split_urls(cell: str) -> tuple[str, ...]:
    """The URLs of a cell, separated by commas and/or whitespace."""
    # str.split() and re's \s agree on what whitespace is.
    return tuple(cell.replace(",", " ").split())


def cell_problems(cell: str, urls: tuple[str, ...], max_urls: int, max_length: int) -> list[str]:
    """What is wrong with a cell whose URLs are `urls`, one message each; none when fine."""
    found: list[str] = []
    if not urls:
        found.append("the row has no image URLs")
    elif len(urls) > max_urls:
        found.append(
            f"the row has {len(urls):,} image URLs; the limit is {max_urls:,} "
            "(IMGSVC_MAX_URLS_PER_ROW)"
        )
    if max(map(len, urls), default=0) <= max_length and _PLAIN_CELL.fullmatch(cell):
        return found
    for url in urls:
        why = _url_problem(url, max_length)
        if why:
            found.append(why)
    return found


def _url_problem(url: str, max_length: int) -> str | None:
    """Why ``url`` cannot be fetched, or None when it is a plausible http(s) URL."""
    if len(url) > max_length:
        return f"{show(url)} is {len(url):,} characters long; the limit is {max_length:,}"
    return None if _PLAIN_URL.fullmatch(url) else _unusual_url_problem(url)


def _unusual_url_problem(url: str) -> str | None:
    if _BAD_CHAR.search(url):
        return f"{show(url)} contains a control or invisible character"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it is what checks the port
    except ValueError as exc:
        return f"{show(url)} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):  # urlsplit lowercases the scheme
        hint = " (it should start with https:// or http://)" if not parts.scheme else ""
        return f"{show(url)} is not an http or https URL{hint}"
    if not parts.hostname:
        return f"{show(url)} has no host"
    return None
