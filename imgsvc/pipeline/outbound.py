"""What every outbound HTTP request shares, image fetches and webhooks alike: the guarded
session they are sent through, and how a server's Retry-After is read."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp

from .netguard import AddressPolicy, guarded_connector

# Flow control, not an allocation: an image of a few hundred KiB arrives in a few reads
# instead of dozens (older aiohttp releases read 64 KiB at a time).
READ_BUFFER = 256 * 1024


def guarded_session(
    policy: AddressPolicy,
    limit: int,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: aiohttp.ClientTimeout | None = None,
) -> aiohttp.ClientSession:
    """A session whose every connection goes to an address `policy` allows, `limit` at most
    at once; `headers` go with every request, `timeout` None keeps aiohttp's default."""
    return aiohttp.ClientSession(
        connector=guarded_connector(policy, limit),
        trust_env=False,  # no proxy settings from the environment
        # Cookies a host sets are neither kept nor sent: requests made for different users
        # share the session, and neither an image nor a webhook needs them.
        cookie_jar=aiohttp.DummyCookieJar(),
        headers=headers,
        timeout=timeout,
        read_bufsize=READ_BUFFER,
    )


def parse_retry_after(value: str | None) -> float | None:
    """The seconds a Retry-After header asks to wait (RFC 9110: delay-seconds or an HTTP
    date); None when it is absent or unreadable, 0 for a date already past."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # the obsolete asctime form carries no zone; HTTP dates are GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
