"""The `latency` section: images/s when the image hosts are far, as a share of the same
job from a host on loopback.

Each image host answers every request after a delay (ImageHost's `delay`: the network's
round trip and the host's own time before the first byte). The job's images are on one
host, or spread over ten hosts (ten ImageHost servers on ten ports: a host, for
IMGSVC_FETCH_PER_HOST, is a name and a port). With one host, IMGSVC_FETCH_PER_HOST caps
the rate at per_host / delay, so the last row shows the one setting a user with one far
CDN host changes. The loopback run is measured before and after the others (the shared
machine's speed drifts), and each run is compared with their mean.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from dataclasses import dataclass

import aiohttp
from benchkit import Bench, ImageHost, Row, Server, free_port, poll, upload

IMAGES = 300  # per run: a far single host at the default takes its 40 s on this many
FAR_CDN_PER_HOST = 160  # docs/performance.md: images/s wanted x seconds per image


@dataclass(frozen=True)
class Run:
    delay: float  # seconds before each answer
    hosts: int
    env: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        where = "one host" if self.hosts == 1 else f"{self.hosts} hosts"
        setting = "".join(f", {key}={value}" for key, value in self.env)
        return f"{self.delay * 1000:.0f} ms away, {where}{setting}"


RUNS = (
    Run(0.05, 1),
    Run(0.3, 1),
    Run(1.0, 1),
    Run(0.3, 10),
    Run(1.0, 10),
    Run(1.0, 1, (("IMGSVC_FETCH_PER_HOST", str(FAR_CDN_PER_HOST)),)),
)


def spread_csv(bases: list[str], images: int) -> bytes:
    """One image a product, the products' images taking the hosts in turn."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["S. No.", "Product Name", "Input Image Urls"])
    for n in range(images):
        writer.writerow([n + 1, f"SKU{n + 1}", f"{bases[n % len(bases)]}/images/{n}.jpg"])
    return out.getvalue().encode()


@dataclass
class Measured:
    rate: float  # images/s, upload to completed
    downloads: float  # the most image requests under way at once (/metrics)
    held: float  # the most bytes of bodies held at once (/metrics)


async def measure(bench: Bench, run: Run, label: str) -> Measured:
    started = [await ImageHost.start(bench.bodies, delay=run.delay) for _ in range(run.hosts)]
    server = Server(bench.folder / label, free_port(), dict(run.env))
    peaks = {"imgsvc_downloads_in_flight": 0.0, "imgsvc_fetch_bytes_in_flight": 0.0}
    try:
        async with aiohttp.ClientSession() as client:
            await server.ready(client)
            start = time.perf_counter()
            answer = await upload(client, server.url, spread_csv([b for _, b in started], IMAGES))
            watching = asyncio.create_task(watch(client, server.url + "/metrics", peaks))
            final = await poll(client, answer["status_url"], [])
            elapsed = time.perf_counter() - start
            watching.cancel()
    finally:
        server.stop()
        for host, _ in started:
            host.close()
            await host.wait_closed()
    assert final["progress"]["succeeded_images"] == IMAGES, final
    return Measured(IMAGES / elapsed, *peaks.values())


async def watch(client: aiohttp.ClientSession, url: str, peaks: dict[str, float]) -> None:
    """Keep the highest value of each gauge in `peaks`, read every 100 ms."""
    while True:
        async with client.get(url) as response:
            for line in (await response.text()).splitlines():
                name, _, value = line.partition(" ")
                if name in peaks:
                    peaks[name] = max(peaks[name], float(value))
        await asyncio.sleep(0.1)


async def latency(bench: Bench) -> list[Row]:
    """Each far run's images/s against the loopback run's, with the most downloads and
    bytes the service had in flight at once."""
    near = Run(0.0, 1)
    before = await measure(bench, near, "near-before")
    runs = [await measure(bench, run, f"run{n}") for n, run in enumerate(RUNS)]
    after = await measure(bench, near, "near-after")
    base = (before.rate + after.rate) / 2
    rows = [
        ("loopback, one host (before / after)",
         f"{before.rate:.1f} / {after.rate:.1f} images/s; {shown(before)} / {shown(after)}"),
    ]  # fmt: skip
    for run, got in zip(RUNS, runs, strict=True):
        rows.append(
            (run.name, f"{got.rate:.1f} images/s ({100 * got.rate / base:.0f}%); {shown(got)}")
        )
    return rows


def shown(got: Measured) -> str:
    return f"in flight at most {got.downloads:.0f} downloads, {got.held / 2**20:.0f} MiB"
