"""Bench section `sizes`: what several sizes per image cost the service.

The same job of 1200x1200 photos runs with one output per image and with
`sizes=1600,800,300` (so four outputs: the main one, 1600 capped at the photo's own 1200,
800 and 300). The service process's CPU (from /proc) per input image is compared; the
goal is at most 1.5 times as much. The runs alternate, and each kind's median is shown.
"""

from __future__ import annotations

import statistics
import time

import aiohttp
from benchkit import Bench, Row, Server, free_port, poll, upload
from sample_host import products_csv

SIZES = "1600,800,300"
ROUNDS = 3  # runs of each kind, alternating


async def sized_job(bench: Bench, name: str, sizes: str) -> dict[str, float]:
    """Run one job of `bench.args.images` photos on a fresh service; CPU ms per image, all
    of it and the event loop's (the rest is mostly the compress threads)."""
    images = bench.args.images
    server = Server(bench.folder / name, free_port())
    try:
        async with aiohttp.ClientSession() as client:
            await server.ready(client)
            data = products_csv(bench.host, images // 2, 2).encode()
            cpu, loop_cpu = server.cpu_seconds()
            start = time.perf_counter()
            answer = await upload(client, server.url, data, f"?sizes={sizes}" if sizes else "")
            final = await poll(client, answer["status_url"], [])
            elapsed = time.perf_counter() - start
            cpu_after, loop_after = server.cpu_seconds()
    finally:
        server.stop()
    assert final["progress"]["succeeded_images"] == images, final
    return {
        "cpu": 1000 * (cpu_after - cpu) / images,
        "loop_cpu": 1000 * (loop_after - loop_cpu) / images,
        "rate": images / elapsed,
    }


async def sizes(bench: Bench) -> list[Row]:
    """CPU per image with sizes=1600,800,300 against the same job with one output."""
    one: list[dict[str, float]] = []
    four: list[dict[str, float]] = []
    for n in range(ROUNDS):  # alternating, so a drift of the machine hits both kinds
        one.append(await sized_job(bench, f"one{n}", ""))
        four.append(await sized_job(bench, f"sized{n}", SIZES))
    cpu_one = statistics.median(r["cpu"] for r in one)
    cpu_four = statistics.median(r["cpu"] for r in four)
    loop_one = statistics.median(r["loop_cpu"] for r in one)
    loop_four = statistics.median(r["loop_cpu"] for r in four)
    rate_one = statistics.median(r["rate"] for r in one)
    rate_four = statistics.median(r["rate"] for r in four)
    return [
        ("service CPU ms per image: one output / sizes=1600,800,300",
         f"{cpu_one:.1f} / {cpu_four:.1f}"),
        ("sizes=1600,800,300 / one output, CPU per image (goal at most 1.5x)",
         f"{cpu_four / cpu_one:.2f}x"),
        ("of which the event loop's: one output / sizes=1600,800,300",
         f"{loop_one:.1f} / {loop_four:.1f}"),
        ("upload to completed: one output / sizes=1600,800,300",
         f"{rate_one:.1f} / {rate_four:.1f} images/s"),
    ]  # fmt: skip
