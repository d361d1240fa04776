"""The benchmark: the real service against the machine's ceiling, offline.

Workload 1 serves photo-like 1200x1200 JPEGs from a local host, runs `imgsvc serve`
(uvicorn, SQLite, files) on several hundred of them while polling GET /api/status, and
measures the ceiling in the same run: the same decode + encode + write by a plain thread
pool over the same bytes, no HTTP and no database. It does so in rounds, each service
run between two ceiling runs, and reports the median round.

Workload 2 uploads a 100,000-row CSV: time to the 202, the latency of other requests
during the upload, and the service's peak memory while that job runs.

    python scripts/bench.py [--images 600] [--rounds 3] [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import aiohttp
from PIL import Image

from imgsvc.pipeline.compress import EncodeOptions, compress, keep_memory_for

sys.path.insert(0, str(Path(__file__).parent))
from sample_host import DISTINCT, photo, products_csv

Work = Callable[[bytes, Path], None]


def bare_pillow(body: bytes, path: Path) -> None:
    """Pillow at its plainest: open, decode, encode at quality 50 into a file."""
    image = Image.open(io.BytesIO(body))
    image.load()
    with path.open("wb") as out:
        image.save(out, "JPEG", quality=50)


def same_work(body: bytes, path: Path) -> None:
    """What the service does to each image (imgsvc.images.compress), into a file."""
    with path.open("wb") as out:
        compress(body, out, EncodeOptions(), 50_000_000)


def ceiling(work: Work, bodies: list[bytes], count: int, folder: Path) -> dict[str, float]:
    """Images per second, and CPU ms per image, for `work` in a plain thread pool (one
    thread a core, as the service has), with no HTTP and no database."""
    workers = os.cpu_count() or 1
    folder.mkdir()
    keep_memory_for(workers)  # the same allocator setting as the service, to be fair
    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda n: work(bodies[n % len(bodies)], folder / f"{n}.jpg"), range(count)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"rate": count / elapsed, "cpu": 1000 * cpu / count}


NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
REQUEST = re.compile(rb"GET /images/(\d+)\.jpg ")


class ImageHost(asyncio.Protocol):
    """A bare HTTP/1.1 image host answering from memory, /images/<n>.jpg for any n.

    Real image hosts are other machines; here the host shares the service's two cores, so
    every cycle it spends is taken from the service. aiohttp's web server, even sending
    files with sendfile, cost 1.4-1.8 ms of CPU per image; this costs about 0.3 ms.
    """

    def __init__(self, answers: list[bytes]) -> None:
        self._answers = answers
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    @classmethod
    async def start(cls, bodies: list[bytes]) -> tuple[asyncio.Server, str]:
        answers = [
            b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b"
            % (len(body), body)
            for body in bodies
        ]
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: cls(answers), "127.0.0.1", 0)
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
            number = int(match[1]) if match else None
            self._transport.write(
                NOT_FOUND if number is None else self._answers[number % len(self._answers)]
            )


class Server:
    """`imgsvc serve` in a subprocess on a free port, with its own data folder."""

    def __init__(self, folder: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "IMGSVC_ALLOW_PRIVATE_URLS": "1", "IMGSVC_DATA_DIR": str(folder)}
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


async def upload(client: aiohttp.ClientSession, url: str, data: bytes) -> dict[str, Any]:
    async with client.post(
        url + "/api/upload", data=data, headers={"Content-Type": "text/csv"}
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def workload_images(server: Server, host: str, images: int) -> dict[str, Any]:
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


async def workload_rows(server: Server, host: str, rows: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as client:
        await server.ready(client)
        data = products_csv(host, rows, 1, distinct=500).encode()
        other: list[float] = []
        stop = asyncio.Event()

        async def probe() -> None:
            while not stop.is_set():
                start = time.perf_counter()
                async with client.get(server.url + "/api/jobs?limit=5") as response:
                    await response.read()
                other.append(time.perf_counter() - start)
                await asyncio.sleep(0.02)

        prober = asyncio.create_task(probe())
        start = time.perf_counter()
        answer = await upload(client, server.url, data)
        accepted = time.perf_counter() - start
        stop.set()
        await prober
        final = await poll(client, answer["status_url"], [])
    assert final["status"] == "completed", final
    return {
        "accepted": accepted,
        "bytes": len(data),
        "p99": percentile(other, 0.99),
        "memory": server.peak_memory_mb(),
    }


async def main(args: argparse.Namespace) -> None:
    bodies = [photo(n, 1200) for n in range(DISTINCT)]
    host_server, host = await ImageHost.start(bodies)
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="imgsvc-bench-") as tmp:
        folder = Path(tmp)
        bare = await asyncio.to_thread(ceiling, bare_pillow, bodies, args.images, folder / "bare")
        # The machine's speed drifts (a shared VM): each service round sits between two
        # measurements of the ceiling and is compared with their mean.
        same = [await asyncio.to_thread(ceiling, same_work, bodies, args.images, folder / "same0")]
        for n in range(1, args.rounds + 1):
            server = Server(folder / f"one{n}", args.port)
            try:
                one = await workload_images(server, host, args.images)
            finally:
                server.stop()
            same.append(
                await asyncio.to_thread(
                    ceiling, same_work, bodies, args.images, folder / f"same{n}"
                )
            )
            around = {key: (same[-2][key] + same[-1][key]) / 2 for key in ("rate", "cpu")}
            rounds.append({"same": around, "one": one, "ratio": one["rate"] / around["rate"]})
        server = Server(folder / "two", args.port)
        try:
            two = await workload_rows(server, host, args.rows)
        finally:
            server.stop()
    host_server.close()
    await host_server.wait_closed()
    report(args, bare, rounds, two)


def report(
    args: argparse.Namespace,
    bare: dict[str, float],
    rounds: list[dict[str, Any]],
    two: dict[str, float],
) -> None:
    size = statistics.mean(len(photo(n, 1200)) for n in range(DISTINCT)) / 1000
    middle = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
    same, one = middle["same"], middle["one"]
    latencies = [x for r in rounds for x in r["one"]["latencies"]]
    ratios = ", ".join(f"{100 * r['ratio']:.0f}%" for r in rounds)
    rows = [
        ("ceiling: bare Pillow open+save, thread pool", f"{bare['rate']:.1f} images/s"),
        ("ceiling: imgsvc's compress + write, thread pool (before and after)",
         f"{same['rate']:.1f} images/s"),
        ("service: upload to completed", f"{one['rate']:.1f} images/s"),
        ("service / same-work ceiling (each round)", f"{100 * middle['ratio']:.0f}% ({ratios})"),
        ("CPU ms per image: bare / same work / service (of it event loop) / bench",
         f"{bare['cpu']:.1f} / {same['cpu']:.1f} / {one['cpu']:.1f} ({one['loop_cpu']:.1f})"
         f" / {one['host_cpu']:.1f}"),
        ("GET /api/status during the runs, p50 / p99",
         f"{percentile(latencies, 0.5):.1f} / {percentile(latencies, 0.99):.1f} ms"),
        ("service peak memory (workload 1)",
         f"{max(r['one']['memory'] for r in rounds):.0f} MB"),
        (f"{args.rows:,}-row CSV ({two['bytes'] / 1e6:.1f} MB): time to 202",
         f"{two['accepted']:.2f} s"),
        ("other requests during that upload, p99", f"{two['p99']:.1f} ms"),
        ("service peak memory (workload 2)", f"{two['memory']:.0f} MB"),
    ]  # fmt: skip
    print(
        f"\nimgsvc bench: {os.cpu_count()} cores, {args.images} images of 1200x1200 "
        f"(~{size:.0f} KB), {len(rounds)} rounds; the median round is shown"
    )
    print("| measure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=8765)
    asyncio.run(main(parser.parse_args()))
