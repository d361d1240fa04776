"""The `fair` section: one slice whose URLs mostly come from one far host, the rest from a
near one. A slice takes its URLs in URL order, so grouped by host; the near host's images
should arrive at once, not once the far host's turns have worked through its share.

The far host (127.0.0.1, first in URL order) answers each request DELAY seconds late, so
its FAR images at IMGSVC_FETCH_PER_HOST (8) connections take FAR x DELAY / 8 seconds at
least; the near host (`localhost`, after it) answers at once. Shown: the seconds from the
upload until the near host had answered its NEAR images, and until the job ended.
"""

from __future__ import annotations

import time
from collections import Counter

import aiohttp
from benchkit import Bench, ImageHost, Row, Server, free_port, poll, upload

FAR, NEAR = 400, 100  # one slice: 500 distinct URLs
DELAY = 0.3  # seconds before each of the far host's answers
PER_HOST = 8  # IMGSVC_FETCH_PER_HOST's default


async def fair(bench: Bench) -> list[Row]:
    near_answered = Answered(NEAR)
    far_server, far = await ImageHost.start(bench.bodies, delay=DELAY)
    near_server, near = await ImageHost.start(bench.bodies, near_answered)
    server = Server(bench.folder / "fair", free_port())
    try:
        async with aiohttp.ClientSession() as client:
            await server.ready(client)
            start = time.perf_counter()
            answer = await upload(client, server.url, catalogue(far, near))
            final = await poll(client, answer["status_url"], [])
            job = time.perf_counter() - start
    finally:
        server.stop()
        for host in (far_server, near_server):
            host.close()
            await host.wait_closed()
    assert final["progress"]["succeeded_images"] == FAR + NEAR, final
    least = FAR * DELAY / PER_HOST
    near_seconds = near_answered.done_at - start
    return [
        (
            f"far host {DELAY * 1000:.0f} ms away, {FAR} of a slice's {FAR + NEAR} images, "
            f"first in URL order (at least {least:.0f} s)",
            f"job ended after {job:.1f} s",
        ),
        (
            f"near host's {NEAR} images, after it in URL order",
            f"all answered {near_seconds:.1f} s after the upload ({near_seconds / job:.0%} "
            "of the job)",
        ),
    ]


def catalogue(far: str, near: str) -> bytes:
    """A CSV of FAR images from `far`, then NEAR from `near` under a name that sorts after
    it (URLs are taken in URL order)."""
    near = near.replace("127.0.0.1", "localhost")
    urls = [f"{far}/images/{n}.jpg" for n in range(FAR)]
    urls += [f"{near}/images/{n}.jpg" for n in range(FAR, FAR + NEAR)]
    rows = "".join(f"{n},SKU{n},{url}\n" for n, url in enumerate(urls, start=1))
    return ("S. No.,Product Name,Input Image Urls\n" + rows).encode()


class Answered(Counter[int]):
    """A host's answers by status, with the moment it had sent `wanted` images."""

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.wanted = wanted
        self.done_at = float("nan")

    def __setitem__(self, status: int, count: int) -> None:
        super().__setitem__(status, count)
        if status == 200 and count == self.wanted:
            self.done_at = time.perf_counter()
