"""The bench's `connects` section: GET /api/status latency on a running job before, while
and after 300 event streams connect to it at once. It tells the cost of the streams being
open (the watchers section's fan-out) from the cost of their arrival: 300 requests in the
same instant, each checking the job (from the job's shared watch, one read for them all)
and setting up its stream."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from benchkit import Bench, Row, Server, free_port, percentile, upload
from sample_host import products_csv

STREAMS = 300
ARRIVAL = 1.5  # seconds after the streams are opened that count as their arrival


async def connects(bench: Bench) -> list[Row]:
    """Status latency before, during and after 300 streams connect to one running job."""
    server = Server(bench.folder / "service", free_port())
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
            await server.ready(client)
            data = products_csv(bench.host, 1500, 2).encode()
            job = (await upload(client, server.url, data, "?reuse=false"))["request_id"]
            timings: list[tuple[float, float]] = []
            stop = asyncio.Event()

            async def poll_status() -> None:
                while not stop.is_set():
                    start = time.perf_counter()
                    async with client.get(f"{server.url}/api/status/{job}") as response:
                        await response.read()
                    timings.append((start, time.perf_counter() - start))
                    await asyncio.sleep(0.02)

            async def stream() -> None:
                async with client.get(f"{server.url}/api/events/{job}") as response:
                    async for _ in response.content:
                        if stop.is_set():
                            return

            poller = asyncio.create_task(poll_status())
            await asyncio.sleep(2)
            opened = time.perf_counter()
            streams = [asyncio.create_task(stream()) for _ in range(STREAMS)]
            await asyncio.sleep(8)
            stop.set()
            for task in streams:
                task.cancel()
            await asyncio.gather(poller, *streams, return_exceptions=True)
    finally:
        server.stop()
    phases = {
        "before the streams": [d for t, d in timings if t < opened],
        f"while {STREAMS} streams connect (first {ARRIVAL:g} s)": [
            d for t, d in timings if opened <= t < opened + ARRIVAL
        ],
        f"with {STREAMS} streams open": [d for t, d in timings if t >= opened + ARRIVAL],
    }
    # On a loaded machine one poll can outlast the streams' arrival: none starts within it.
    return [
        (f"GET /api/status p50 / p99 {name}",
         f"{percentile(found, 0.5):.1f} / {percentile(found, 0.99):.1f} ms ({len(found)} polls)"
         if found else "no poll started")
        for name, found in phases.items()
    ]  # fmt: skip
