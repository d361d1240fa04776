"""Shared by the security tests: a guarded service, an allowed image host on 127.0.0.2, a
listener on refused addresses that counts every connection, and a raw HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgsvc.config import Settings

from .conftest import ImageHost, Service, loopback_server

ALLOWED_HOST = "127.0.0.2"  # the one loopback address IMGSVC_ALLOW_NETWORKS opens


def guarded_settings(data_dir: Path, **env: str) -> Settings:
    """Settings as an operator would write them: refusing private addresses but 127.0.0.2."""
    environ = {
        "IMGSVC_DATA_DIR": str(data_dir),
        "IMGSVC_ALLOW_NETWORKS": f"{ALLOWED_HOST}/32",
        "IMGSVC_CPU_WORKERS": "2",
        "IMGSVC_FETCH_TIMEOUT": "5",
        "IMGSVC_FETCH_RETRIES": "0",
    }
    return Settings.from_env(environ | env)


@asynccontextmanager
async def allowed_image_host(port: int = 0) -> AsyncIterator[ImageHost]:
    """An image host on 127.0.0.2, the address the guarded settings allow."""
    host = ImageHost()
    async with loopback_server(host.handle, ALLOWED_HOST, port) as host.server:
        yield host


@dataclass
class Listener:
    """A TCP server on a refused address; `connections` counts every accepted socket."""

    port: int
    connections: int = 0
    servers: list[asyncio.Server] = field(default_factory=list)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


@asynccontextmanager
async def refused_listener(port: int = 0) -> AsyncIterator[Listener]:
    """Listens on 127.0.0.1 and ::1 on one port, so a leak to either would be counted."""
    listener = Listener(port)
    first = await asyncio.start_server(listener._accept, "127.0.0.1", port)
    listener.port = first.sockets[0].getsockname()[1]
    second = await asyncio.start_server(listener._accept, "::1", listener.port)
    listener.servers = [first, second]
    try:
        yield listener
    finally:
        for server in listener.servers:
            server.close()
            await server.wait_closed()


async def raw_http(service: Service, request: bytes) -> bytes:
    """Send exact request bytes (no client normalising the path) and read the answer:
    nothing else is sent, so an answer to a request whose body is missing proves the
    service did not wait for that body."""
    host, port = service.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(30):
            head = await reader.readuntil(b"\r\n\r\n")
            length = _content_length(head)
            if length is None or request.startswith(b"HEAD "):
                length = 0
            body = await reader.readexactly(length)
        return head + body
    finally:
        writer.close()


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer."""
    return int(answer.split(b" ", 2)[1])


async def image_outcomes(service: Service, request_id: str) -> dict[str, dict[str, Any]]:
    """Every image of a finished job by input URL: status, error, output_url, size."""
    await service.wait(request_id)
    status, details = await service.get(f"/api/details/{request_id}")
    assert status == 200
    return {i["input_url"]: i for p in details["products"] for i in p["images"]}


def one_per_row(urls: list[str]) -> str:
    """A CSV with one product per URL (quoted, so any URL stays one cell)."""
    rows = [f'{n},P{n},"{url}"' for n, url in enumerate(urls, start=1)]
    return "S. No.,Product Name,Input Image Urls\n" + "\n".join(rows) + "\n"
