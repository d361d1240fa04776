"""Downloads against real aiohttp servers on loopback addresses."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from imgsvc.fetch import Fetcher, FetchError, FetchLimits
from imgsvc.netguard import AddressPolicy, guarded_connector

from .conftest import ImageHost, jpeg_bytes

pytestmark = pytest.mark.anyio

LIMITS = FetchLimits(max_bytes=100_000, timeout=3, max_redirects=3, retries=2, stall_timeout=1)
# Only 127.0.0.2 is opened, so the host below is reachable and 127.0.0.1 stays refused.
POLICY = AddressPolicy(allow_networks=(ipaddress.ip_network("127.0.0.2/32"),))


@pytest.fixture
async def host() -> AsyncIterator[ImageHost]:
    app = web.Application()
    server = ImageHost(TestServer(app, host="127.0.0.2", port=0))
    app.router.add_route("GET", "/{tail:.*}", server.handle)
    await server.server.start_server()
    yield server
    await server.server.close()


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    connector = guarded_connector(POLICY, limit=10)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        yield Fetcher(session, LIMITS, concurrency=10)


async def failure(fetcher: Fetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(url)
    return caught.value


async def test_an_allowed_host_is_fetched(fetcher: Fetcher, host: ImageHost) -> None:
    body = jpeg_bytes(20, 20)
    assert await fetcher.fetch(host.add("/a.jpg", body)) == body


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x.jpg",
        "http://[::1]:9/x.jpg",
        "http://[::ffff:127.0.0.1]:9/x.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://a@127.0.0.1:9/x.jpg",
        "http://localhost:9/x.jpg",  # a name that resolves to a refused address
    ],
)
async def test_refused_addresses_fail_without_connecting(fetcher: Fetcher, url: str) -> None:
    error = await failure(fetcher, url)
    assert error.code == "blocked_address"
    assert "does not connect to" in error.message


@pytest.mark.parametrize(
    "url",
    ["http://2130706433/x.jpg", "http://0177.0.0.1/x.jpg", "http://0x7f000001/x.jpg",
     "http://127.1/x.jpg", "http://0x7f.0.0.1:9/x.jpg"],
)  # fmt: skip
async def test_numeric_spellings_of_loopback_are_refused(fetcher: Fetcher, url: str) -> None:
    error = await failure(fetcher, url)
    assert error.code == "blocked_address"
    assert "127.0.0.1 written in a non-standard numeric form" in error.message


async def test_a_redirect_to_a_refused_address_is_blocked(
    fetcher: Fetcher, host: ImageHost
) -> None:
    async def to_loopback(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:9/secret")

    error = await failure(fetcher, host.route("/r", to_loopback))
    assert error.code == "blocked_address"


async def test_redirects_are_followed_up_to_the_limit(fetcher: Fetcher, host: ImageHost) -> None:
    body = jpeg_bytes(10, 10)
    final = host.add("/final.jpg", body)

    def hop(target: str):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.Response:
            raise web.HTTPMovedPermanently(target)

        return handler

    chain = final
    for n in range(3):
        chain = host.route(f"/hop{n}", hop(chain))
    assert await fetcher.fetch(chain) == body
    too_long = host.route("/hop3", hop(chain))
    error = await failure(fetcher, too_long)
    assert (error.code, error.message) == ("http_error", "more than 3 redirects")


async def test_large_bodies_are_cut_with_or_without_length(
    fetcher: Fetcher, host: ImageHost
) -> None:
    declared = host.add("/big.jpg", b"x" * 200_000)
    assert (await failure(fetcher, declared)).code == "too_large"

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"x" * 10_000)
        return response

    assert (await failure(fetcher, host.route("/chunked.jpg", chunked))).code == "too_large"


async def test_gzip_bodies_are_counted_after_decompression(
    fetcher: Fetcher, host: ImageHost
) -> None:
    async def bomb(request: web.Request) -> web.Response:
        packed = gzip.compress(b"\0" * 1_000_000)
        return web.Response(body=packed, headers={"Content-Encoding": "gzip"})

    error = await failure(fetcher, host.route("/bomb.jpg", bomb))
    assert error.code == "too_large"


async def test_a_trickling_server_hits_the_total_timeout(fetcher: Fetcher, host: ImageHost) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"x")
            await asyncio.sleep(0.5)
        return response

    error = await failure(fetcher, host.route("/trickle.jpg", trickle))
    assert error.code == "timeout"
    assert "3 s" in error.message


async def test_transient_errors_are_retried(fetcher: Fetcher, host: ImageHost) -> None:
    body = jpeg_bytes(10, 10)

    async def flaky(request: web.Request) -> web.Response:
        if host.hits["/flaky.jpg"] < 3:
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.Response(body=body)

    assert await fetcher.fetch(host.route("/flaky.jpg", flaky)) == body
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
