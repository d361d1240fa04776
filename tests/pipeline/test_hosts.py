"""Politeness towards image hosts, as the hosts see it: through the service, against real
aiohttp image hosts that count connections and ask for pauses."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from imgsvc.pipeline.hosts import LONGEST_PAUSE
from imgsvc.pipeline.queue import RENEW_INTERVAL

from ..conftest import (
    Handler,
    ImageHost,
    jpeg_bytes,
    loopback_server,
    running_service,
    settings_for,
)

pytestmark = pytest.mark.anyio

BODY = jpeg_bytes(60, 40)


@pytest.fixture
async def other_host() -> AsyncIterator[ImageHost]:
    host = ImageHost()
    async with loopback_server(host.handle) as host.server:
        yield host


def products(*urls: str) -> str:
    rows = (f"{n},SKU{n},{url}" for n, url in enumerate(urls, start=1))
    return "S. No.,Product Name,Input Image Urls\n" + "\n".join(rows) + "\n"


def in_url_order(*hosts: ImageHost) -> list[ImageHost]:
    """The hosts as a slice hands out their URLs: in URL order, so by host."""
    return sorted(hosts, key=lambda host: host.url("/"))


def image(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="image/jpeg")


def noting(arrivals: list[float], delay: float = 0.0) -> Handler:
    """A handler answering with an image `delay` seconds late, noting when it answered."""

    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        arrivals.append(time.monotonic())
        return image(request)

    return answer


async def test_a_host_never_sees_more_connections_than_the_limit(
    tmp_path: Path, image_host: ImageHost
) -> None:
    answering: set[str] = set()
    peers: set[tuple[str, int]] = set()  # each connection's client address and port
    most_requests = most_connections = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal most_requests, most_connections
        answering.add(request.path)
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        # Sockets the host has open right now, idle keep-alive ones included.
        sockets = image_host.server.runner.server.connections  # type: ignore[union-attr]
        most_connections = max(most_connections, len(sockets))
        most_requests = max(most_requests, len(answering))
        await asyncio.sleep(0.03)
        answering.discard(request.path)
        return image(request)

    urls = [image_host.route(f"/slow/{n}.jpg", slow) for n in range(24)]
    async with running_service(settings_for(tmp_path, fetch_per_host=3)) as service:
        _, answer = await service.upload(products(*urls))
        final = await service.wait(answer["request_id"])
    assert final["progress"]["succeeded_images"] == 24
    assert most_connections <= 3
    assert most_requests == 3  # the limit was reached: the images were fetched side by side
    assert len(peers) == 3  # and kept alive: a far host's handshake is paid once a connection


async def test_a_pause_longer_than_an_image_waits_fails_the_hosts_images(
    tmp_path: Path, image_host: ImageHost, other_host: ImageHost
) -> None:
    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": str(int(LONGEST_PAUSE) + 60)})

    paced = [image_host.route(f"/gone/{n}.jpg", gone) for n in range(4)]
    fine = other_host.add("/fine.jpg", BODY)
    start = time.monotonic()
    async with running_service(settings_for(tmp_path, fetch_per_host=1)) as service:
        _, answer = await service.upload(products(*paced, fine))
        final = await service.wait(answer["request_id"])
        _, details = await service.get(f"/api/details/{answer['request_id']}")
    assert time.monotonic() - start < LONGEST_PAUSE
    progress = final["progress"]
    assert (progress["succeeded_images"], progress["failed_images"]) == (1, 4)
    assert sum(image_host.hits.values()) == 1  # asked once, then left alone
    errors = [i["error"] for p in details["products"] for i in p["images"] if i["error"]]
    assert {e["code"] for e in errors} == {"http_error"}
    assert all("asked for no requests until" in e["message"] for e in errors)


async def test_a_paused_host_with_most_of_a_slice_does_not_hold_back_the_others(
    tmp_path: Path, image_host: ImageHost, other_host: ImageHost
) -> None:
    first, then = in_url_order(image_host, other_host)
    paused_at: list[float] = []
    first_arrivals: list[float] = []
    then_arrivals: list[float] = []

    async def limited(request: web.Request) -> web.Response:
        if not paused_at:
            paused_at.append(time.monotonic())
            return web.Response(status=429, headers={"Retry-After": "2"})
        first_arrivals.append(time.monotonic())
        return image(request)

    # The paused host's URLs come first in the slice, three times as many as the downloads
    # allowed at once.
    paced = [first.route(f"/limited/{n}.jpg", limited) for n in range(24)]
    others = [then.route(f"/free/{n}.jpg", noting(then_arrivals)) for n in range(10)]
    settings = settings_for(tmp_path, fetch_concurrency=8, fetch_per_host=1)
    async with running_service(settings) as service:
        _, answer = await service.upload(products(*paced, *others))
        final = await service.wait(answer["request_id"])
    assert final["progress"]["succeeded_images"] == 34
    resume = paused_at[0] + 2
    assert len(then_arrivals) == 10
    assert max(then_arrivals) < resume  # the other host went on meanwhile
    assert len(first_arrivals) == 24
    assert min(first_arrivals) >= resume


async def test_a_slow_host_with_most_of_a_slice_does_not_hold_back_the_others(
    tmp_path: Path, image_host: ImageHost, other_host: ImageHost
) -> None:
    first, then = in_url_order(image_host, other_host)
    first_arrivals: list[float] = []
    then_arrivals: list[float] = []

    slow_urls = [first.route(f"/slow/{n}.jpg", noting(first_arrivals, 0.2)) for n in range(20)]
    quick_urls = [then.route(f"/quick/{n}.jpg", noting(then_arrivals)) for n in range(10)]
    settings = settings_for(tmp_path, fetch_concurrency=8, fetch_per_host=2)
    async with running_service(settings) as service:
        _, answer = await service.upload(products(*slow_urls, *quick_urls))
        final = await service.wait(answer["request_id"])
    assert final["progress"]["succeeded_images"] == 30
    # The slow host serves two images each 0.2 s, so 2 s in all; the quick one is done
    # before the slow one is halfway.
    assert len(then_arrivals) == 10
    assert max(then_arrivals) < sorted(first_arrivals)[10]


async def test_downloads_in_flight_never_exceed_the_limit_across_hosts(
    tmp_path: Path, image_host: ImageHost, other_host: ImageHost
) -> None:
    answering: Counter[str] = Counter()  # requests being answered, by host
    most_in_all = most_on_one = 0

    def counting(host: ImageHost) -> Handler:
        name = host.url("/")

        async def answer(request: web.Request) -> web.Response:
            nonlocal most_in_all, most_on_one
            answering[name] += 1
            most_in_all = max(most_in_all, answering.total())
            most_on_one = max(most_on_one, answering[name])
            await asyncio.sleep(0.03)
            answering[name] -= 1
            return image(request)

        return answer

    urls = [
        host.route(f"/counted/{n}.jpg", counting(host))
        for host in (image_host, other_host)
        for n in range(16)
    ]
    # Two hosts of three connections each could take six; four are allowed in all.
    settings = settings_for(tmp_path, fetch_concurrency=4, fetch_per_host=3)
    async with running_service(settings) as service:
        _, answer = await service.upload(products(*urls))
        final = await service.wait(answer["request_id"])
    assert final["progress"]["succeeded_images"] == 32
    assert most_in_all == 4
    assert most_on_one == 3


async def test_an_image_waiting_for_its_host_shows_as_pending_not_processing(
    tmp_path: Path, image_host: ImageHost
) -> None:
    release = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        await release.wait()
        return image(request)

    urls = [image_host.route(f"/held/{n}.jpg", held) for n in range(2)]
    async with running_service(settings_for(tmp_path, fetch_per_host=1)) as service:
        _, answer = await service.upload(products(*urls))
        path = f"/api/details/{answer['request_id']}"

        async def statuses() -> list[str]:
            _, details = await service.get(path)
            return sorted(i["status"] for p in details["products"] for i in p["images"])

        async with asyncio.timeout(10):
            while "processing" not in await statuses():
                await asyncio.sleep(0.05)
        await asyncio.sleep(2 * RENEW_INTERVAL)  # what is in flight is stored at each renewal
        assert await statuses() == ["pending", "processing"]  # one connection, one download
        release.set()
        final = await service.wait(answer["request_id"])
    assert final["progress"]["succeeded_images"] == 2
