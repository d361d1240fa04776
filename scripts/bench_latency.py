"""The `latency` section: images/s when the image hosts are far, as a share of the same
job from a host on loopback, or of the politeness cap where that is lower.

Each far host answers every request after a delay (the network's round trip and the
host's own time before the first byte), and the first request of each new connection
one round trip later still (the TCP handshake), so reusing connections counts as it
would. The job's images take the hosts in turn: one host, ten, or forty (a catalogue
gathered from many shops; a host, for IMGSVC_FETCH_PER_HOST, is a name and a port, here
one server a port).

Connections to a host are capped (IMGSVC_FETCH_PER_HOST, 8), so by Little's law a job's
rate is at most hosts x per_host / delay: 27 images/s from one host 300 ms away, 80 from
ten hosts 1 s away. A run whose cap is below the loopback rate is a politeness cap and
is measured against it, on a job sized to take about CAPPED_SECONDS. The other runs are
measured against loopback on a long job (five times --images): a far job starts a round
trip late, and on a short one that start alone is a large share (1 s on a 2.3 s job).
The loopback run is measured before and after the others (the shared machine's speed
drifts), and each run is compared with their mean.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from dataclasses import dataclass

import aiohttp
from benchkit import Bench, ImageHost, Row, Server, free_port, poll, upload

PER_HOST = 8  # IMGSVC_FETCH_PER_HOST's default
FAR_CDN_PER_HOST = 160  # docs/performance.md: images/s wanted x seconds per image
CAPPED_SECONDS = 20  # how long a run held to its politeness cap takes (its start: 1-2 s)
LONG_JOB = 5  # times --images, for the runs measured against loopback


class FarHost(ImageHost):
    """An ImageHost whose every new connection answers its first request one round trip
    (`delay`) later than the others: the TCP handshake of a far host."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._handshake = self._delay

    def _send(self, answer: bytes) -> None:
        delay, self._handshake = self._delay + self._handshake, 0.0
        asyncio.get_running_loop().call_later(delay, self._write, answer)


@dataclass(frozen=True)
class Run:
    delay: float  # seconds before each answer
    hosts: int
    per_host: int = PER_HOST

    @property
    def name(self) -> str:
        where = "one host" if self.hosts == 1 else f"{self.hosts} hosts"
        setting = "" if self.per_host == PER_HOST else f", IMGSVC_FETCH_PER_HOST={self.per_host}"
        return f"{self.delay * 1000:.0f} ms away, {where}{setting}"

    @property
    def cap(self) -> float:
        """Images/s the per-host limit allows at most (Little's law), inf on loopback."""
        return self.hosts * self.per_host / self.delay if self.delay else float("inf")

    @property
    def env(self) -> dict[str, str]:
        return {"IMGSVC_FETCH_PER_HOST": str(self.per_host)}


RUNS = (
    Run(0.05, 1),
    Run(0.3, 1),
    Run(1.0, 1),
    Run(0.3, 10),
    Run(1.0, 10),
    Run(1.0, 40),
    Run(1.0, 1, FAR_CDN_PER_HOST),
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
    images: int
    rate: float  # images/s, upload to completed
    downloads: float  # the most image requests under way at once (/metrics)
    held: float  # the most bytes of bodies held at once (/metrics)
    ramp: float  # seconds from the upload until downloads first reached 90% of their most


async def measure(bench: Bench, run: Run, images: int, label: str) -> Measured:
    kind = FarHost if run.delay else ImageHost
    started = [await kind.start(bench.bodies, delay=run.delay) for _ in range(run.hosts)]
    server = Server(bench.folder / label, free_port(), run.env)
    trace: list[tuple[float, float, float]] = []
    try:
        async with aiohttp.ClientSession() as client:
            await server.ready(client)
            start = time.perf_counter()
            answer = await upload(client, server.url, spread_csv([b for _, b in started], images))
            watching = asyncio.create_task(watch(client, server.url + "/metrics", trace))
            final = await poll(client, answer["status_url"], [])
            elapsed = time.perf_counter() - start
            watching.cancel()
    finally:
        server.stop()
        for host, _ in started:
            host.close()
            await host.wait_closed()
    assert final["progress"]["succeeded_images"] == images, final
    downloads = max(d for _, d, _ in trace)
    ramp = next(t for t, d, _ in trace if d >= 0.9 * downloads) - start
    return Measured(images, images / elapsed, downloads, max(h for _, _, h in trace), ramp)


async def watch(
    client: aiohttp.ClientSession, url: str, trace: list[tuple[float, float, float]]
) -> None:
    """Append the time, downloads in flight and bytes held to `trace` every 100 ms."""
    names = ("imgsvc_downloads_in_flight", "imgsvc_fetch_bytes_in_flight")
    while True:
        async with client.get(url) as response:
            values = dict(line.split(" ", 1) for line in (await response.text()).splitlines()
                          if line.startswith(names))  # fmt: skip
        downloads, held = (float(values[name]) for name in names)
        trace.append((time.perf_counter(), downloads, held))
        await asyncio.sleep(0.1)


async def latency(bench: Bench) -> list[Row]:
    """Each far run's images/s against the loopback run's, or against its politeness cap
    when that is lower, with the most downloads and bytes in flight at once."""
    long_job = LONG_JOB * bench.args.images
    near = Run(0.0, 1)
    before = await measure(bench, near, long_job, "near-before")
    runs = []
    for n, run in enumerate(RUNS):
        capped = run.cap < before.rate
        images = round(run.cap * CAPPED_SECONDS) if capped else long_job
        runs.append((run, capped, await measure(bench, run, images, f"run{n}")))
    after = await measure(bench, near, long_job, "near-after")
    base = (before.rate + after.rate) / 2
    rows = [
        (f"loopback, one host, {long_job} images (before / after)",
         f"{before.rate:.1f} / {after.rate:.1f} images/s; {shown(before)} / {shown(after)}"),
    ]  # fmt: skip
    for run, capped, got in runs:
        share = f"{100 * got.rate / base:.0f}% of loopback"
        if capped:
            cap = f"{run.hosts} x {run.per_host} connections / {run.delay:g} s = {run.cap:.0f}"
            share = f"{100 * got.rate / run.cap:.0f}% of the politeness cap {cap}; {share}"
        rows.append(
            (f"{run.name}, {got.images} images", f"{got.rate:.1f} images/s ({share}); {shown(got)}")
        )
    return rows


def shown(got: Measured) -> str:
    return (
        f"in flight at most {got.downloads:.0f} downloads (90% of them {got.ramp:.1f} s after "
        f"uploading), {got.held / 2**20:.0f} MiB"
    )
