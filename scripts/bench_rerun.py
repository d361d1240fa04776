"""The bench's `rerun` section: a catalogue uploaded again unchanged, as catalogue teams
do daily. The first run downloads and encodes every image; the re-run asks the host with
the ETags it gave (the bench's host answers 304) and reuses every output. Goal: the re-run
at least 10 times quicker than the first, with no full download and no encode."""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import aiohttp
from benchkit import Bench, ImageHost, Row, Server, free_port, poll, upload
from sample_host import products_csv

CATALOGUE = 3000  # distinct images, one per product
ENCODES = re.compile(r"^imgsvc_compress_seconds_count (\S+)$", re.MULTILINE)


async def rerun(bench: Bench) -> list[Row]:
    """An unchanged 3,000-image catalogue, run twice on one service."""
    answered: Counter[int] = Counter()
    host_server, host = await ImageHost.start(bench.bodies, answered)
    server = Server(bench.folder / "data", free_port())
    try:
        async with aiohttp.ClientSession() as client:
            await server.ready(client)
            data = products_csv(host, CATALOGUE, 1).encode()
            first, _ = await timed_run(client, server.url, data)
            answered.clear()
            encoded = await encodes(client, server.url)
            again, final = await timed_run(client, server.url, data)
            encoded = await encodes(client, server.url) - encoded
    finally:
        server.stop()
        host_server.close()
        await host_server.wait_closed()
    reused = final["progress"]["reused_images"]
    return [
        (f"first run of {CATALOGUE:,} images", f"{first:.1f} s ({CATALOGUE / first:.0f} images/s)"),
        ("re-run, nothing changed", f"{again:.2f} s ({CATALOGUE / again:.0f} images/s)"),
        ("first run / re-run (goal >= 10x)", f"{first / again:.1f}x"),
        ("re-run: reused / full downloads / 304s / encodes",
         f"{reused:,} / {answered[200]} / {answered[304]:,} / {encoded:.0f}"),
    ]  # fmt: skip


async def timed_run(
    client: aiohttp.ClientSession, url: str, data: bytes
) -> tuple[float, dict[str, Any]]:
    """Seconds from the upload to the job's end, and its final status."""
    start = time.perf_counter()
    answer = await upload(client, url, data)
    final = await poll(client, answer["status_url"], [])
    assert final["status"] == "completed", final
    return time.perf_counter() - start, final


async def encodes(client: aiohttp.ClientSession, url: str) -> float:
    """Images the service has decoded and encoded so far (its metrics)."""
    async with client.get(url + "/metrics") as response:
        found = ENCODES.search(await response.text())
    assert found is not None
    return float(found[1])
