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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp

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
REQUEST = re.compile(rb"GET /images/(\d+)\.jpg ")


class ImageHost(asyncio.Protocol):
    """A bare HTTP/1.1 image host answering from memory, /images/<n>.jpg for any n.

    Real image hosts are other machines; here the host shares the service's two cores, so
    every cycle it spends is taken from the service. aiohttp's web server, even sending
    files with sendfile, cost 1.4-1.8 ms of CPU per image; this costs about 0.3 ms.
    """

    def __init__(self, answers: list[bytes], delay: float) -> None:
        self._answers = answers
        self._delay = delay
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    @classmethod
    async def start(cls, bodies: list[bytes], *, delay: float = 0.0) -> tuple[asyncio.Server, str]:
        """Serve `bodies`, each answer sent `delay` seconds after its request (a far host:
        the network's round trip and the host's own time, before the first byte)."""
        answers = [
            b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b"
            % (len(body), body)
            for body in bodies
        ]
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: cls(answers, delay), "127.0.0.1", 0)
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
            answer = NOT_FOUND if number is None else self._answers[number % len(self._answers)]
            if self._delay:
                asyncio.get_running_loop().call_later(self._delay, self._send, answer)
            else:
                self._transport.write(answer)

    def _send(self, answer: bytes) -> None:
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


def free_port() -> int:
    """A port nothing listens on now, for a server started next."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
