"""Downloading one image: guarded, capped in size and time, redirects checked hop by hop,
each hop in a turn of its host (hosts.py), its body counted in the byte budget (budget.py);
conditional when the validators of an earlier download are known."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass

import aiohttp
from yarl import URL

from .. import metrics
from ..models import Validators
from .budget import ByteBudget, Held
from .hosts import HostGate, HostPaused
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
        self.host_paused = False  # the host was paused for its Retry-After: no backoff


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int
    # For the whole fetch of one URL, retries and redirects included; time spent waiting
    # for a turn of the host, a download slot or room in the byte budget is not counted.
    timeout: float
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
    """Fetches URLs through one session of its own: `concurrency` requests at most at
    once, `per_host` to any one host (hosts.py), and bodies held to `bytes_in_flight`
    bytes (budget.py)."""

    def __init__(
        self,
        policy: AddressPolicy,
        limits: FetchLimits,
        *,
        concurrency: int,
        per_host: int,
        bytes_in_flight: int,
    ) -> None:
        if bytes_in_flight < limits.max_bytes:
            raise ValueError("bytes in flight must hold at least one image of the largest size")
        self._session = guarded_session(
            policy,
            concurrency,
            headers={"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.5"},
            timeout=aiohttp.ClientTimeout(sock_read=limits.stall_timeout),
        )
        self._limits = limits
        self._slots = asyncio.Semaphore(concurrency)
        self.policy = policy  # the addresses it connects to
        self._hosts = HostGate(per_host)
        self._budget = ByteBudget(bytes_in_flight, limits.max_bytes)

    async def close(self) -> None:
        await self._session.close()

    def hold(self) -> Held:
        """Where a body's bytes are counted: pass it to `fetch`, and end its block once
        the body is no longer needed."""
        return self._budget.hold()

    async def fetch(
        self,
        url: str,
        known: Validators = UNKNOWN,
        held: Held | None = None,
        started: Callable[[], None] = lambda: None,
    ) -> Download:
        """The body of `url`, or FetchError saying why not. With `known` validators the
        request is conditional, and an unchanged image comes without a body. The body's
        bytes stay counted in `held` (by default only while it downloads). `started` is
        called as each request goes out, once it has its host's turn, a download slot
        and bytes: until the first, the image only waits."""
        if held is None:
            async with self.hold() as own:
                return await self.fetch(url, known, own, started)
        try:
            async with asyncio.timeout(self._limits.timeout) as clock:
                return await self._with_retries(_parse_url(url), known, held, clock, started)
        except TimeoutError:
            held.release()
            raise FetchError(
                "timeout", f"the download took longer than {self._limits.timeout:g} s"
            ) from None

    async def _with_retries(
        self,
        url: URL,
        known: Validators,
        held: Held,
        clock: asyncio.Timeout,
        started: Callable[[], None],
    ) -> Download:
        for attempt in range(self._limits.retries + 1):
            try:
                return await self._follow(url, known, held, clock, started)
            except FetchError as exc:
                held.release()
                if not exc.transient or attempt == self._limits.retries:
                    raise
                if not exc.host_paused:  # else the next turn of the host waits
                    await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    async def _follow(
        self,
        url: URL,
        known: Validators,
        held: Held,
        clock: asyncio.Timeout,
        started: Callable[[], None],
    ) -> Download:
        headers = _conditions(known)
        for _ in range(self._limits.max_redirects + 1):
            _check_url(url)
            async with self._turn(url, held, clock):
                started()
                answer = await self._hop(url, headers, known, held, clock)
            if isinstance(answer, Download):
                return answer
            url = answer
        raise FetchError("http_error", f"more than {self._limits.max_redirects} redirects")

    async def _hop(
        self,
        url: URL,
        headers: dict[str, str],
        known: Validators,
        held: Held,
        clock: asyncio.Timeout,
    ) -> Download | URL:
        """One request, sent in a turn of its host: what it got, or where it redirects to."""
        try:
            async with self._session.get(url, allow_redirects=False, headers=headers) as response:
                if response.status in REDIRECTS and "Location" in response.headers:
                    return url.join(_parse_url(response.headers["Location"]))
                if headers and response.status == NOT_MODIFIED:
                    await held.fit(0, answered=True)  # no body
                    return Download(None, _validators(response) or known)
                self._check_status(url, response)
                body = await self._read(response, held, clock)
                return Download(body, _validators(response) or UNKNOWN)
        except aiohttp.ClientError as exc:
            raise _client_error(exc) from exc

    @asynccontextmanager
    async def _turn(self, url: URL, held: Held, clock: asyncio.Timeout) -> AsyncIterator[None]:
        """Wait, untimed, for a turn of `url`'s host, a download slot and room for a body
        like the last ones; hold the turn and the slot while inside."""
        # Whoever waits for a host holds no bytes (a redirect's first hop reserved some):
        # the holders of that host's turns may be waiting for them.
        held.release()
        async with AsyncExitStack() as stack:
            with _untimed(clock):
                try:
                    await stack.enter_async_context(self._hosts.turn(url))
                except HostPaused as exc:
                    raise FetchError("http_error", str(exc)) from None
                await stack.enter_async_context(self._slots)
                await held.fit(round(self._budget.estimate))
            metrics.DOWNLOADS_IN_FLIGHT.inc()
            stack.callback(metrics.DOWNLOADS_IN_FLIGHT.dec)
            yield

    def _check_status(self, url: URL, response: aiohttp.ClientResponse) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        reason = response.reason or ""
        error = FetchError(
            "http_error",
            f"the server answered HTTP {status} {reason}".rstrip(),
            transient=status == 429 or status >= 500,
        )
        wait = parse_retry_after(response.headers.get("Retry-After"))
        if error.transient and wait is not None:
            # The whole host is asked to wait, not only this image: every image of it waits
            # for the same moment, and one that would wait too long fails (hosts.py).
            self._hosts.pause(url, wait)
            error.host_paused = True
        raise error

    async def _read(
        self, response: aiohttp.ClientResponse, held: Held, clock: asyncio.Timeout
    ) -> bytes:
        limit = self._limits.max_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            raise FetchError("too_large", _too_large(limit, declared))
        # A compressed body is counted after decompression: it may weigh up to the limit.
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        with _untimed(clock):
            await held.fit(limit if declared is None or encoded else declared, answered=True)
        chunks, size = [], 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise FetchError("too_large", _too_large(limit))
            chunks.append(chunk)
        self._budget.learn(size)
        await held.fit(size, answered=True)
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


@contextmanager
def _untimed(clock: asyncio.Timeout) -> Iterator[None]:
    """Time spent inside does not count against `clock`: waiting for our own turn is not
    the download taking long."""
    loop = asyncio.get_running_loop()
    deadline, started = clock.when(), loop.time()
    clock.reschedule(None)
    try:
        yield
    finally:
        if deadline is not None:
            clock.reschedule(deadline + loop.time() - started)


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


def _backoff(attempt: int) -> float:
    return 0.5 * 2.0**attempt * random.uniform(0.8, 1.2)


def _too_large(limit: int, declared: int | None = None) -> str:
    size = f" ({declared:,} bytes)" if declared is not None else ""
    return f"the image is larger than the limit of {limit:,} bytes{size}"
