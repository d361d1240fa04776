"""The Fetcher's own mechanics against a real aiohttp server: retries, and how each kind of
failure is named. The hostile hosts (size caps, gzip bombs, trickling, redirects) and the
refused addresses are checked end to end, through the service, in test_security_*.py."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from imgsvc.models import Validators
from imgsvc.pipeline.fetch import Download, Fetcher, FetchError, FetchLimits
from imgsvc.pipeline.netguard import AddressPolicy

from ..conftest import ImageHost, jpeg_bytes
from ..security_support import ALLOWED_HOST, allowed_image_host

pytestmark = pytest.mark.anyio

LIMITS = FetchLimits(max_bytes=100_000, timeout=3, max_redirects=3, retries=2, stall_timeout=1)
# Only 127.0.0.2 is opened, so the host below is reachable and 127.0.0.1 stays refused.
POLICY = AddressPolicy(allow_networks=(ipaddress.ip_network(f"{ALLOWED_HOST}/32"),))


@pytest.fixture
async def host() -> AsyncIterator[ImageHost]:
    async with allowed_image_host() as running:
        yield running


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    fetcher = Fetcher(POLICY, LIMITS, concurrency=10, per_host=10, bytes_in_flight=1_000_000)
    yield fetcher
    await fetcher.close()


async def failure(fetcher: Fetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(url)
    return caught.value


async def test_an_allowed_host_is_fetched(fetcher: Fetcher, host: ImageHost) -> None:
    body = jpeg_bytes(20, 20)
    assert (await fetcher.fetch(host.add("/a.jpg", body))).body == body


async def test_transient_errors_are_retried(fetcher: Fetcher, host: ImageHost) -> None:
    body = jpeg_bytes(10, 10)

    async def flaky(request: web.Request) -> web.Response:
        if host.hits["/flaky.jpg"] < 3:
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.Response(body=body)

    assert (await fetcher.fetch(host.route("/flaky.jpg", flaky))).body == body
    assert host.hits["/flaky.jpg"] == 3


async def test_client_errors_are_not_retried(fetcher: Fetcher, host: ImageHost) -> None:
    error = await failure(fetcher, host.url("/absent.jpg"))
    assert (error.code, error.message) == ("http_error", "the server answered HTTP 404 Not Found")
    assert host.hits["/absent.jpg"] == 1


async def test_unreachable_ports_are_connect_errors(fetcher: Fetcher) -> None:
    error = await failure(fetcher, "http://127.0.0.2:9/x.jpg")
    assert error.code == "connect_error"


async def test_unknown_hosts_are_dns_errors(fetcher: Fetcher) -> None:
    error = await failure(fetcher, "http://no-such-host.invalid/x.jpg")
    assert error.code == "dns_error"


async def test_cookies_a_host_sets_are_never_sent_back(image_host: ImageHost) -> None:
    body = jpeg_bytes(10, 10)
    sent: list[str | None] = []

    async def tracking(request: web.Request) -> web.Response:
        sent.append(request.headers.get("Cookie"))
        response = web.Response(body=body, content_type="image/jpeg")
        response.set_cookie("visitor", "job-of-another-user", path="/")
        return response

    # By name: aiohttp's default jar ignores cookies from IP addresses anyway.
    url = image_host.route("/tracking.jpg", tracking).replace("127.0.0.1", "localhost")
    fetcher = Fetcher(
        AddressPolicy(allow_private=True),
        LIMITS,
        concurrency=1,
        per_host=1,
        bytes_in_flight=100_000,
    )
    try:
        assert (await fetcher.fetch(url)).body == body
        assert (await fetcher.fetch(url)).body == body
    finally:
        await fetcher.close()
    assert sent == [None, None]


async def test_requests_name_the_fetcher_and_ask_for_images(
    fetcher: Fetcher, host: ImageHost
) -> None:
    seen: list[tuple[str, str]] = []

    async def headers(request: web.Request) -> web.Response:
        seen.append((request.headers["User-Agent"], request.headers["Accept"]))
        return web.Response(body=jpeg_bytes(10, 10), content_type="image/jpeg")

    await fetcher.fetch(host.route("/headers.jpg", headers))
    assert seen == [("imgsvc/0.1 (image fetcher)", "image/*,*/*;q=0.5")]


async def test_a_conditional_fetch_of_an_unchanged_image_has_no_body(
    fetcher: Fetcher, host: ImageHost
) -> None:
    body, etag, modified = jpeg_bytes(10, 10), '"v1"', "Mon, 02 Nov 2026 10:00:00 GMT"
    asked: list[tuple[str | None, str | None]] = []

    async def validating(request: web.Request) -> web.Response:
        asked.append(
            (request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"))
        )
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304)  # no validators repeated: the known ones stand
        return web.Response(body=body, headers={"ETag": etag, "Last-Modified": modified})

    url = host.route("/v.jpg", validating)
    first = await fetcher.fetch(url)
    assert first == Download(body, Validators(etag, modified))
    assert await fetcher.fetch(url, first.validators) == Download(None, first.validators)
    changed = await fetcher.fetch(url, Validators('"v0"', None))
    assert changed.body == body
    assert asked == [(None, None), (etag, modified), ('"v0"', None)]


async def test_a_304_nobody_asked_for_is_an_http_error(fetcher: Fetcher, host: ImageHost) -> None:
    async def not_modified(request: web.Request) -> web.Response:
        return web.Response(status=304)

    error = await failure(fetcher, host.route("/odd.jpg", not_modified))
    assert error.code == "http_error"


async def test_a_redirect_waits_for_its_next_turn_holding_no_bytes(host: ImageHost) -> None:
    body = jpeg_bytes(10, 10)

    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/moved.jpg"})

    # Room for one body, one connection: while the redirected image waits for the host,
    # the image holding the host's turn needs the room that image would otherwise hold.
    fetcher = Fetcher(POLICY, LIMITS, concurrency=10, per_host=1, bytes_in_flight=LIMITS.max_bytes)
    host.add("/moved.jpg", body)
    try:
        async with asyncio.timeout(5):
            got = await asyncio.gather(
                fetcher.fetch(host.route("/a.jpg", moved)), fetcher.fetch(host.add("/b.jpg", body))
            )
    finally:
        await fetcher.close()
    assert [download.body for download in got] == [body, body]
