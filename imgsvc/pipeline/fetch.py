"""Downloading one image: guarded, capped in size and time, redirects checked hop by hop;
conditional when the validators of an earlier download are known."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import aiohttp
from yarl import URL

from ..models import Validators
from .netguard import AddressPolicy, BlockedAddressError, blocked_cause, refuse_numeric_spelling
from .outbound import guarded_session, parse_retry_after

REDIRECTS = frozenset({301, 302, 303, 307, 308})
NOT_MODIFIED = 304
UNKNOWN = Validators()  # nothing known of an earlier download: an unconditional request
USER_AGENT = "imgsvc/0.1 (image fetcher)"


class FetchError(Exception):
    """An image that could not be downloaded; `code` is one of the design's error codes."""

    def __init__(self, code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient
        self.retry_after: float | None = None


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int
    timeout: float  # for the whole fetch of one URL, retries and redirects included
    max_redirects: int
    retries: int
    stall_timeout: float = 10.0  # no byte for this long ends one attempt (and is retried)


@dataclass(frozen=True)
class Download:
    """What a fetch got: the body, or None when the host answered 304 Not Modified to the
    validators it was asked with; and the validators that now name the image."""

    body: bytes | None
    validators: Validators


class Fetcher:
    """Fetches URLs through one session of its own, at most `concurrency` at a time."""

    def __init__(self, policy: AddressPolicy, limits: FetchLimits, concurrency: int) -> None:
        self._session = guarded_session(
            policy,
            concurrency,
            headers={"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.5"},
            timeout=aiohttp.ClientTimeout(sock_read=limits.stall_timeout),
        )
        self._limits = limits
        self._slots = asyncio.Semaphore(concurrency)
        self.policy = policy  # the addresses it connects to

    async def close(self) -> None:
        await self._session.close()

    async def fetch(self, url: str, known: Validators = UNKNOWN) -> Download:
        """The body of `url`, or FetchError saying why not. With `known` validators the
        request is conditional, and an unchanged image comes without a body."""
        try:
            async with asyncio.timeout(self._limits.timeout):
                return await self._with_retries(url, known)
        except TimeoutError:
            raise FetchError(
                "timeout", f"the download took longer than {self._limits.timeout:g} s"
            ) from None

    async def _with_retries(self, url: str, known: Validators) -> Download:
        for attempt in range(self._limits.retries + 1):
            try:
                async with self._slots:
                    return await self._follow(_parse_url(url), known)
            except FetchError as exc:
                if not exc.transient or attempt == self._limits.retries:
                    raise
                await asyncio.sleep(_backoff(attempt, exc.retry_after))
        raise AssertionError("unreachable")

    async def _follow(self, url: URL, known: Validators) -> Download:
        headers = _conditions(known)
        for _ in range(self._limits.max_redirects + 1):
            _check_url(url)
            try:
                async with self._session.get(
                    url, allow_redirects=False, headers=headers
                ) as response:
                    if response.status in REDIRECTS and "Location" in response.headers:
                        url = url.join(_parse_url(response.headers["Location"]))
                        continue
                    if headers and response.status == NOT_MODIFIED:
                        return Download(None, _validators(response) or known)
                    _check_status(response)
                    body = await self._read(response)
                    return Download(body, _validators(response) or UNKNOWN)
            except aiohttp.ClientError as exc:
                raise _client_error(exc) from exc
        raise FetchError("http_error", f"more than {self._limits.max_redirects} redirects")

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self._limits.max_bytes
        if response.content_length is not None and response.content_length > limit:
            raise FetchError("too_large", _too_large(limit, response.content_length))
        chunks, size = [], 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise FetchError("too_large", _too_large(limit))
            chunks.append(chunk)
        return b"".join(chunks)


def _conditions(known: Validators) -> dict[str, str]:
    """The headers that ask the host to answer 304 if the image is still the known one."""
    headers = {}
    if known.etag is not None:
        headers["If-None-Match"] = known.etag
    if known.last_modified is not None:
        headers["If-Modified-Since"] = known.last_modified
    return headers


def _validators(response: aiohttp.ClientResponse) -> Validators | None:
    """The validators the host sent with this answer, None if it sent none."""
    etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
    return None if etag is None and modified is None else Validators(etag, modified)


def _parse_url(text: str) -> URL:
    # yarl refuses some URLs urllib accepts (a backslash in the host part): they are the
    # image's invalid_url, never an exception that ends the job.
    try:
        return URL(text, encoded=False)
    except ValueError as exc:
        raise FetchError("invalid_url", f"the URL is not valid: {exc}") from None


def _check_url(url: URL) -> None:
    if url.scheme not in ("http", "https"):
        raise FetchError("invalid_url", f"{url.scheme or 'a relative'} URL is not http or https")
    if not url.host:
        raise FetchError("invalid_url", "the URL has no host")
    try:
        refuse_numeric_spelling(url.host)
    except BlockedAddressError as exc:
        raise FetchError("blocked_address", str(exc)) from None


def _check_status(response: aiohttp.ClientResponse) -> None:
    status = response.status
    if 200 <= status < 300:
        return
    reason = response.reason or ""
    error = FetchError(
        "http_error",
        f"the server answered HTTP {status} {reason}".rstrip(),
        transient=status == 429 or status >= 500,
    )
    error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
    raise error


def _client_error(exc: aiohttp.ClientError) -> FetchError:
    blocked = blocked_cause(exc)
    if blocked is not None:
        return FetchError("blocked_address", str(blocked))
    if isinstance(exc, aiohttp.InvalidURL):
        return FetchError("invalid_url", f"the URL is not valid: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return FetchError("dns_error", f"the host name could not be resolved: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return FetchError("connect_error", f"could not connect: {exc.os_error}", transient=True)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return FetchError("connect_error", f"the body could not be read: {exc}", transient=True)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return FetchError("timeout", "the server stopped sending data", transient=True)
    return FetchError("connect_error", f"the connection failed: {exc}", transient=True)


def _backoff(attempt: int, retry_after: float | None) -> float:
    base = retry_after if retry_after is not None else 0.5 * 2**attempt
    return min(base, 10.0) * random.uniform(0.8, 1.2)


def _too_large(limit: int, declared: int | None = None) -> str:
    size = f" ({declared:,} bytes)" if declared is not None else ""
    return f"the image is larger than the limit of {limit:,} bytes{size}"
