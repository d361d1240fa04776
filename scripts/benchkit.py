"""What every part of the benchmark shares: a bare image host, `imgsvc serve` in a
subprocess, uploads, polls and percentiles. Each part of `make bench` is a section in its
own module (see bench.py) that returns rows for the one table it prints."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
from sample_host import products_csv

Row = tuple[str, str]


@dataclass
class Bench:
    """What a section is given: the command line, the sample photos (`bodies`), the image
    host serving them at `host` + /images/<n>.jpg, and a temp folder of its own."""

    args: Any
    bodies: list[bytes]
    host: str
    folder: Path


Section = Callable[[Bench], Awaitable[list[Row]]]


NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
NOT_MODIFIED = b'HTTP/1.1 304 Not Modified\r\nETag: "%d"\r\n\r\n'
REQUEST = re.compile(rb"GET /images/(\d+)\.jpg ")
IF_NONE_MATCH = re.compile(rb'\r\nif-none-match: *"(\d+)"', re.IGNORECASE)


class ImageHost(asyncio.Protocol):
    """A bare HTTP/1.1 image host answering from memory, /images/<n>.jpg for any n, with
    the body's number as its ETag (304 to a request that names it), counting its answers
    by status in `answered` when given one.

    Real image hosts are other machines; here the host shares the service's two cores, so
    every cycle it spends is taken from the service. aiohttp's web server, even sending
    files with sendfile, cost 1.4-1.8 ms of CPU per image; this costs about 0.3 ms.
    """

    def __init__(self, answers: list[bytes], answered: Counter[int], delay: float) -> None:
        self._answers = answers
        self._answered = answered
        self._delay = delay
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    @classmethod
    async def start(
        cls, bodies: list[bytes], answered: Counter[int] | None = None, *, delay: float = 0.0
    ) -> tuple[asyncio.Server, str]:
        """Serve `bodies`, counting answers by status in `answered`, each answer sent
        `delay` seconds after its request (a far host: the network's round trip and the
        host's own time, before the first byte)."""
        answers = [
            b'HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nETag: "%d"\r\n'
            b"Content-Length: %d\r\n\r\n%b" % (number, len(body), body)
            for number, body in enumerate(bodies)
        ]
        counts = Counter[int]() if answered is None else answered
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: cls(answers, counts, delay), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        return server, f"http://127.0.0.1:{port}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            match = REQUEST.match(head)
            if match is None:
                self._answered[404] += 1
                self._send(NOT_FOUND)
                continue
            number = int(match[1]) % len(self._answers)
            known = IF_NONE_MATCH.search(head)
            if known and int(known[1]) == number:
                self._answered[304] += 1
                self._send(NOT_MODIFIED % number)
            else:
                self._answered[200] += 1
                self._send(self._answers[number])

    def _send(self, answer: bytes) -> None:
        """Write `answer` now, or `delay` seconds from now."""
        if self._delay:
            asyncio.get_running_loop().call_later(self._delay, self._write, answer)
        else:
            self._write(answer)

    def _write(self, answer: bytes) -> None:
        assert self._transport is not None
        if not self._transport.is_closing():
            self._transport.write(answer)


class Server:
    """`imgsvc serve` in a subprocess on a free port, with its own data folder."""

    def __init__(self, folder: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "IMGSVC_ALLOW_PRIVATE_URLS": "1",
            "IMGSVC_DATA_DIR": str(folder),
            **(env or {}),
        }
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "imgsvc", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self, client: aiohttp.ClientSession) -> None:
        for _ in range(200):
            try:
                async with client.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("the service did not start")

    def peak_memory_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM"))
        return int(line.split()[1]) / 1024

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time used so far by the whole process, and by its main (event loop) thread."""
        pid = self.process.pid
        return _cpu(Path(f"/proc/{pid}/stat")), _cpu(Path(f"/proc/{pid}/task/{pid}/stat"))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def _cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def upload(
    client: aiohttp.ClientSession, url: str, data: bytes, query: str = ""
) -> dict[str, Any]:
    """POST `data` as a raw CSV to the service at `url`, with upload options in `query`
    (e.g. `?reuse=false`); its 202 answer."""
    async with client.post(
        url + "/api/upload" + query, data=data, headers={"Content-Type": "text/csv"}
    ) as response:
        assert response.status == 202, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def poll(client: aiohttp.ClientSession, url: str, latencies: list[float]) -> dict[str, Any]:
    while True:
        start = time.perf_counter()
        async with client.get(url) as response:
            body: dict[str, Any] = await response.json()
        latencies.append(time.perf_counter() - start)
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        await asyncio.sleep(0.05)


async def workload_images(server: Server, host: str, images: int) -> dict[str, Any]:
    """Upload a job of `images` photos from `host` to a started `server` and wait for it:
    images/s, CPU ms per image (all, event loop, this process) and status latencies."""
    async with aiohttp.ClientSession() as client:
        await server.ready(client)
        data = products_csv(host, images // 2, 2).encode()
        (cpu, loop_cpu), own_cpu = server.cpu_seconds(), time.process_time()
        start = time.perf_counter()
        answer = await upload(client, server.url, data)
        latencies: list[float] = []
        final = await poll(client, answer["status_url"], latencies)
        elapsed = time.perf_counter() - start
        (cpu_after, loop_after), own_cpu = server.cpu_seconds(), time.process_time() - own_cpu
    assert final["progress"]["succeeded_images"] == images, final
    return {
        "rate": images / elapsed,
        "cpu": 1000 * (cpu_after - cpu) / images,
        "loop_cpu": 1000 * (loop_after - loop_cpu) / images,
        "host_cpu": 1000 * own_cpu / images,
        "latencies": latencies,
        "memory": server.peak_memory_mb(),
    }


async def upload_watched(
    client: aiohttp.ClientSession, url: str, data: bytes
) -> tuple[dict[str, Any], float, list[float]]:
    """Upload `data` while another request lists jobs every 20 ms: the 202 answer, the
    seconds to it, and the latencies of those other requests meanwhile."""
    other: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            async with client.get(url + "/api/jobs?limit=5") as response:
                await response.read()
            other.append(time.perf_counter() - start)
            await asyncio.sleep(0.02)

    prober = asyncio.create_task(probe())
    start = time.perf_counter()
    answer = await upload(client, url, data)
    accepted = time.perf_counter() - start
    stop.set()
    await prober
    return answer, accepted, other


async def large_upload(bench: Bench, env: dict[str, str] | None = None) -> list[Row]:
    """A large CSV (`--rows`): time to the 202, other requests' latency meanwhile, and the
    service's peak memory while the job runs; `env` chooses its database and storage."""
    rows = bench.args.rows
    server = Server(bench.folder / "upload", free_port(), env)
    try:
        async with aiohttp.ClientSession() as client:
            await server.ready(client)
            data = products_csv(bench.host, rows, 1, distinct=500).encode()
            answer, accepted, other = await upload_watched(client, server.url, data)
            final = await poll(client, answer["status_url"], [])
        assert final["status"] == "completed", final
        memory = server.peak_memory_mb()
    finally:
        server.stop()
    return [
        (f"{rows:,}-row CSV ({len(data) / 1e6:.1f} MB): time to 202", f"{accepted:.2f} s"),
        ("other requests during that upload, p99", f"{percentile(other, 0.99):.1f} ms"),
        ("service peak memory while that job runs", f"{memory:.0f} MB"),
    ]


def free_port() -> int:
    """A port nothing listens on now, for a server started next."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
