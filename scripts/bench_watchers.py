"""Many watchers and pollers: what 300 event streams and steady polling cost a running
job, and how the status route holds 1,000 polls a second.

(a) The same job is run unwatched and watched, alternately, on one `imgsvc serve`: watched
means 300 streams on GET /api/events/{id} opened right after the 202, plus 20 clients
polling GET /api/status/{id} every 100 ms. A job's time is its own `created_at` to
`completed_at`; each watched run is compared with the mean of the unwatched runs on
either side of it (the shared machine's speed drifts).
(b) GET /api/status at 1,000 requests a second for 10 s, on schedule (open loop: a request
goes out at its time whether or not the ones before it have been answered), over the
jobs of (a), which have ended. Latency counts from the scheduled time, so a stall in the
service shows as the wait it causes, not as fewer requests.

The client is one asyncio process speaking plain HTTP/1.1 on keep-alive connections,
opening a new one whenever none is free (no cap, so requests wait in the service, never
in the client); its own CPU is shown beside the service's, on the same two cores.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from benchkit import Bench, Row, Server, free_port, percentile, upload
from sample_host import products_csv

STREAMS = 300  # event streams on the watched job
POLLERS, POLL_EVERY = 20, 0.1  # clients polling its status, and each one's pause
RATE, SECONDS = 1000, 10.0  # part (b): status requests a second, for how long
TERMINAL = (b'"status":"completed"', b'"status":"failed"', b'"status":"cancelled"')


class Connections:
    """Keep-alive HTTP/1.1 connections to one server, as many as are asked for at once."""

    def __init__(self, url: str) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def get(self, path: str) -> tuple[int, bytes]:
        """The status code and body of GET `path`."""
        while self._idle:
            reader, writer = self._idle.pop()
            try:
                return await self._get(reader, writer, path)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()  # closed by the server after its keep-alive timeout
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        return await self._get(reader, writer, path)

    async def _get(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
    ) -> tuple[int, bytes]:
        writer.write(b"GET %b HTTP/1.1\r\nHost: bench\r\n\r\n" % path.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        body = await reader.readexactly(length)
        self._idle.append((reader, writer))
        return int(head[9:12]), body

    async def stream(self, path: str) -> int:
        """Follow an event stream to its `done` event; the number of events before it."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(b"GET %b HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" % path.encode())
        seen, tail = 0, b""
        while chunk := await reader.read(65536):
            data = tail + chunk
            if b"event: done" in data:
                break
            seen += data.count(b"event: progress") - tail.count(b"event: progress")
            tail = data[-32:]
        else:
            raise RuntimeError(f"the stream of {path} ended before its done event")
        writer.close()
        return seen

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()


@dataclass
class Run:
    """One job of part (a): its rate, the service's CPU, and what its watchers saw."""

    rate: float
    cpu: float  # service CPU seconds from the upload to the job's end
    wall: float  # seconds from the upload to the job's end, as the client saw it
    own_cpu: float  # the bench process's CPU seconds meanwhile (image host and client)
    latencies: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Watchers:
    """Who watches a job in part (a)."""

    name: str
    streams: int
    pollers: int


UNWATCHED = Watchers("unwatched", 0, 0)
WATCHED = (
    Watchers(f"{STREAMS} event streams", STREAMS, 0),
    Watchers(f"{STREAMS} event streams + {POLLERS} pollers", STREAMS, POLLERS),
)


def job_seconds(status: dict[str, Any]) -> float:
    """The job's own time from its creation to its end, as the service recorded them."""
    created, ended = (datetime.fromisoformat(status[k]) for k in ("created_at", "completed_at"))
    return (ended - created).total_seconds()


async def run_job(
    server: Server, client: aiohttp.ClientSession, csv: bytes, images: int, watchers: Watchers
) -> Run:
    """Run the job with `watchers` on it from its 202 to its end (and one client polling
    every 50 ms in every run, to see the end). Every run makes every image again
    (reuse=false): the same CSV runs many times on one service."""
    connections = Connections(server.url)
    cpu, own, start = server.cpu_seconds()[0], time.process_time(), time.perf_counter()
    answer = await upload(client, server.url, csv, "?reuse=false")
    job = answer["request_id"]
    latencies: list[float] = []
    ended = asyncio.Event()

    async def poller(pause: float) -> None:
        while not ended.is_set():
            start = time.perf_counter()
            code, body = await connections.get(f"/api/status/{job}")
            latencies.append(time.perf_counter() - start)
            assert code == 200, body
            if any(state in body for state in TERMINAL):
                ended.set()
            await asyncio.sleep(pause)

    streams = [connections.stream(f"/api/events/{job}") for _ in range(watchers.streams)]
    pollers = [poller(POLL_EVERY) for _ in range(watchers.pollers)]
    events, _ = await asyncio.gather(
        asyncio.gather(*streams), asyncio.gather(poller(0.05), *pollers)
    )
    cpu, own = server.cpu_seconds()[0] - cpu, time.process_time() - own
    wall = time.perf_counter() - start
    connections.close()
    async with client.get(answer["status_url"]) as response:
        status = await response.json()
    assert status["progress"]["succeeded_images"] == images, status
    return Run(images / job_seconds(status), cpu, wall, own, latencies, events)


async def steady_polls(server: Server, jobs: list[str]) -> dict[str, float]:
    """GET /api/status at RATE a second for SECONDS, each request at its time."""
    connections = Connections(server.url)
    latencies: list[float] = []
    failed = 0

    async def one(path: str, due: float) -> None:
        nonlocal failed
        code, _ = await connections.get(path)
        latencies.append(time.perf_counter() - due)
        failed += code != 200

    total = int(RATE * SECONDS)
    tasks: set[asyncio.Task[None]] = set()
    (cpu, loop_cpu), own = server.cpu_seconds(), time.process_time()
    start = time.perf_counter()
    sent = 0
    while sent < total:
        due_now = min(total, int((time.perf_counter() - start) * RATE) + 1)
        for n in range(sent, due_now):
            task = asyncio.create_task(one(f"/api/status/{jobs[n % len(jobs)]}", start + n / RATE))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent = due_now
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    (cpu_after, loop_after), own = server.cpu_seconds(), time.process_time() - own
    connections.close()
    assert not failed, f"{failed} requests failed"
    return {
        "rate": total / elapsed,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "cpu": 1000 * (cpu_after - cpu) / total,
        "loop_cpu": 1000 * (loop_after - loop_cpu) / total,
        "service_share": 100 * (cpu_after - cpu) / elapsed,
        "client_cpu": 1000 * own / total,
        "client_share": 100 * own / elapsed,
        "connections": connections.opened,
    }


async def watchers(bench: Bench) -> list[Row]:
    """(a) a job unwatched and watched, alternately; (b) 1,000 status polls a second."""
    images, rounds = bench.args.images, bench.args.rounds
    csv = products_csv(bench.host, images // 2, 2).encode()
    server = Server(bench.folder / "service", free_port())
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
            await server.ready(client)
            alone = [await run_job(server, client, csv, images, UNWATCHED)]
            runs: dict[Watchers, list[Run]] = {w: [] for w in WATCHED}
            for _ in range(rounds):
                for watchers in WATCHED:
                    runs[watchers].append(await run_job(server, client, csv, images, watchers))
                alone.append(await run_job(server, client, csv, images, UNWATCHED))
            async with client.get(server.url + "/api/jobs?limit=50") as response:
                jobs = [j["request_id"] for j in (await response.json())["jobs"]]
        polls = await steady_polls(server, jobs)
    finally:
        server.stop()
    cpu_alone = statistics.mean(a.cpu for a in alone) / images  # seconds per image
    rows = [
        (f"{images}-image job unwatched: images/s (median of {len(alone)}), service CPU a image",
         f"{statistics.median(a.rate for a in alone):.1f}, {1000 * cpu_alone:.1f} ms"),
    ]  # fmt: skip
    for watchers, watched in runs.items():
        rows += watched_rows(watchers, watched, alone, cpu_alone * images)
    return [
        *rows,
        (f"GET /api/status at {RATE}/s for {SECONDS:.0f} s (open loop): achieved",
         f"{polls['rate']:.0f}/s on {polls['connections']:.0f} connections"),
        ("the same, p50 / p99 from the scheduled time",
         f"{polls['p50']:.1f} / {polls['p99']:.1f} ms"),
        ("the same, service CPU a request (of it event loop), share of a core",
         f"{polls['cpu']:.2f} ({polls['loop_cpu']:.2f}) ms, {polls['service_share']:.0f}%"),
        ("the same, client CPU a request, share of a core",
         f"{polls['client_cpu']:.2f} ms, {polls['client_share']:.0f}%"),
    ]  # fmt: skip


def watched_rows(watchers: Watchers, watched: list[Run], alone: list[Run], cpu: float) -> list[Row]:
    """The rows of one kind of watched run: its rate against the unwatched runs on either
    side (the median round, then each), what watching adds to the service's CPU per
    second, the status latency and what the streams saw."""
    ratios = [
        w.rate / ((a.rate + b.rate) / 2) for w, a, b in zip(watched, alone, alone[1:], strict=False)
    ]
    middle = sorted(ratios)[len(ratios) // 2]
    added = statistics.mean((w.cpu - cpu) / w.wall for w in watched)
    own = statistics.mean(w.own_cpu / w.wall for w in watched)
    seen = [e for w in watched for e in w.events]
    latencies = [x for w in watched for x in w.latencies]
    return [
        (f"with {watchers.name}: images/s (median), of unwatched (each round)",
         f"{statistics.median(w.rate for w in watched):.1f}, {100 * middle:.0f}% "
         f"({', '.join(f'{100 * r:.0f}%' for r in ratios)})"),
        ("  service CPU watching adds / bench process CPU (image host, client), share of a core",
         f"{100 * added:.1f}% / {100 * own:.0f}%"),
        ("  GET /api/status p50 / p99; progress events a stream, min / mean",
         f"{percentile(latencies, 0.5):.1f} / {percentile(latencies, 0.99):.1f} ms; "
         f"{min(seen, default=0)} / {statistics.mean(seen or [0]):.1f}"),
    ]  # fmt: skip
