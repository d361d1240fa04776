"""Hostile image hosts, through the running service: each image fails with its own code and
the rest of the job goes on. (tests/test_fetch.py checks the Fetcher's retries and how it
names connection and DNS failures; these cases live only here.)"""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import pytest
from aiohttp import web

from ..conftest import ImageHost, jpeg_bytes, running_service
from ..security_support import allowed_image_host, guarded_settings, image_outcomes, one_per_row

pytestmark = pytest.mark.anyio

LIMIT = 100_000  # IMGSVC_MAX_IMAGE_BYTES for these tests


async def chunked(request: web.Request) -> web.StreamResponse:
    """600 kB with no Content-Length."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(60):
        await response.write(b"\xff\xd8\xff" + b"x" * 9_997)
    return response


async def gzip_bomb(request: web.Request) -> web.Response:
    """10 kB on the wire, 10 MB once decompressed."""
    packed = gzip.compress(b"\xff\xd8\xff" + b"\0" * 10_000_000)
    return web.Response(
        body=packed, headers={"Content-Encoding": "gzip", "Content-Type": "image/jpeg"}
    )


async def trickle(request: web.Request) -> web.StreamResponse:
    """One byte every 0.5 s: never stalls long enough for a read timeout, never ends."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(120):
        await response.write(b"\xff")
        await asyncio.sleep(0.5)
    return response


def redirect_chain(host: ImageHost, name: str, hops: int, final: str) -> str:
    """A URL that redirects `hops` times before reaching `final`."""
    target = final
    for n in reversed(range(hops)):

        def make(to: str):  # type: ignore[no-untyped-def]
            async def handler(request: web.Request) -> web.Response:
                raise web.HTTPFound(to)

            return handler

        target = host.route(f"/{name}{n}", make(target))
    return target


def hostile_urls(host: ImageHost) -> dict[str, str]:
    """Name -> URL for every hostile behaviour, plus good images that must still work."""
    good = jpeg_bytes(120, 90)

    async def bad_location(request: web.Request) -> web.Response:
        # Set by hand: aiohttp's own redirect helper refuses to send this Location.
        return web.Response(status=302, headers={"Location": "http://127.0.0.1:9\\@a.example/"})

    return {
        "good": host.add("/good.jpg", good),
        "declared_too_large": host.add("/declared.jpg", b"\xff\xd8\xff" + b"x" * 200_000),
        "chunked_too_large": host.route("/chunked.jpg", chunked),
        "gzip_bomb": host.route("/gzip.jpg", gzip_bomb),
        "trickle": host.route("/trickle.jpg", trickle),
        "redirects_at_limit": redirect_chain(host, "ok", 2, host.add("/final.jpg", good)),
        "redirects_over_limit": redirect_chain(host, "far", 3, host.url("/final.jpg")),
        "html_as_jpeg": host.add("/page.jpg", b"<!doctype html><p>hello</p>", "image/jpeg"),
        "jpeg_as_html": host.add("/photo.html", good, "text/html"),
        "bad_redirect": host.route("/bad-location", bad_location),
        "backslash_host": f"http://127.0.0.1:{host.server.port}\\@example.com/x.jpg",
    }


EXPECTED = {
    "good": ("succeeded", None),
    "declared_too_large": ("failed", "too_large"),
    "chunked_too_large": ("failed", "too_large"),
    "gzip_bomb": ("failed", "too_large"),
    "trickle": ("failed", "timeout"),
    "redirects_at_limit": ("succeeded", None),
    "redirects_over_limit": ("failed", "http_error"),
    "html_as_jpeg": ("failed", "not_an_image"),
    "jpeg_as_html": ("succeeded", None),
    "bad_redirect": ("failed", "invalid_url"),
    "backslash_host": ("failed", "invalid_url"),
}


async def test_hostile_hosts_fail_their_own_image_only(tmp_path: Path) -> None:
    settings = guarded_settings(
        tmp_path,
        IMGSVC_MAX_IMAGE_BYTES=str(LIMIT),
        IMGSVC_FETCH_TIMEOUT="3",
        IMGSVC_MAX_REDIRECTS="2",
    )
    async with allowed_image_host() as host, running_service(settings) as service:
        urls = hostile_urls(host)
        status, answer = await service.upload(one_per_row(list(urls.values())))
        assert status == 202
        outcomes = await image_outcomes(service, answer["request_id"])
        final = await service.wait(answer["request_id"])
    got = {
        name: (outcomes[url]["status"], (outcomes[url]["error"] or {}).get("code"))
        for name, url in urls.items()
    }
    assert got == EXPECTED
    assert final["status"] == "completed"

    def message(name: str) -> str:
        return str(outcomes[urls[name]]["error"]["message"])

    assert message("declared_too_large") == (
        "the image is larger than the limit of 100,000 bytes (200,003 bytes)"
    )
    assert message("gzip_bomb") == "the image is larger than the limit of 100,000 bytes"
    assert message("trickle") == "the download took longer than 3 s"
    assert message("redirects_over_limit") == "more than 2 redirects"
    assert "HTML" in message("html_as_jpeg")
    assert host.hits["/gzip.jpg"] == 1  # too_large is not retried
    redirected = outcomes[urls["redirects_at_limit"]]  # the image at the end of the chain
    assert (redirected["width"], redirected["height"]) == (120, 90)
    assert host.hits["/final.jpg"] == 1  # the chain over the limit never reached it
