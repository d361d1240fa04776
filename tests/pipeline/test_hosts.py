"""Politeness towards image hosts, as the hosts see it: through the service, against real
aiohttp image hosts that count connections and ask for pauses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from imgsvc.pipeline.hosts import LONGEST_PAUSE

from ..conftest import ImageHost, jpeg_bytes, loopback_server, running_service, settings_for

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
        return web.Response(body=BODY, content_type="image/jpeg")

    urls = [image_host.route(f"/slow/{n}.jpg", slow) for n in range(24)]
    async with running_service(settings_for(tmp_path, fetch_per_host=3)) as service:
        _, answer = await service.upload(products(*urls))
        final = await service.wait(answer["request_id"])
    assert final["progress"]["succeeded_images"] == 24
    assert most_connections <= 3
    assert most_requests == 3  # the limit was reached: the images were fetched side by side
    assert len(peers) == 3  # and kept alive: a far host's handshake is paid once a connection


async def test_a_host_asking_for_a_pause_gets_it_while_others_go_on(
    tmp_path: Path, image_host: ImageHost, other_host: ImageHost
) -> None:
    paused_at: list[float] = []
    arrivals: list[float] = []

    async def limited(request: web.Request) -> web.Response:
        if not paused_at:
            paused_at.append(time.monotonic())
            return web.Response(status=429, headers={"Retry-After": "2"})
        arrivals.append(time.monotonic())
        return web.Response(body=BODY, content_type="image/jpeg")

    async def timed(request: web.Request) -> web.Response:
        arrivals_elsewhere.append(time.monotonic())
        return web.Response(body=BODY, content_type="image/jpeg")

    arrivals_elsewhere: list[float] = []
    paced = [image_host.route(f"/limited/{n}.jpg", limited) for n in range(5)]
    free = [other_host.route(f"/free/{n}.jpg", timed) for n in range(20)]
    # One connection a host: the first image's 429 comes back before the next is asked.
    async with running_service(settings_for(tmp_path, fetch_per_host=1)) as service:
        _, answer = await service.upload(products(*paced, *free))
        final = await service.wait(answer["request_id"])
    assert final["progress"]["succeeded_images"] == 25  # no image failed for waiting
    resume = paused_at[0] + 2
    assert len(arrivals) == 5
    assert min(arrivals) >= resume  # the whole host waited, not only the image asked
    assert len(arrivals_elsewhere) == 20
    assert max(arrivals_elsewhere) < resume


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
