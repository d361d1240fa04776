"""An image host whose answers wait for the test to open a gate: images held in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

from .conftest import jpeg_bytes, loopback_server


@dataclass
class GatedHost:
    """Serves /img/{name}: a small JPEG, once the gate is open; /missing/{name}: 404 until
    `found` says otherwise. Counts requests per path, and notes when each arrived."""

    server: TestServer = field(init=False)  # set when the server starts
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0
    hits: dict[str, int] = field(default_factory=dict)
    found: set[str] = field(default_factory=set)
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each request
    body: bytes = field(default_factory=lambda: jpeg_bytes(64, 48))

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def csv(self, products: int, per_product: int = 1, prefix: str = "/img/p") -> str:
        lines = ["S. No.,Product Name,Input Image Urls"]
        for n in range(products):
            urls = ",".join(self.url(f"{prefix}{n}-{i}.jpg") for i in range(per_product))
            lines.append(f'{n + 1},SKU{n + 1},"{urls}"')
        return "\n".join(lines) + "\n"

    async def until_waiting(self, count: int) -> None:
        async with asyncio.timeout(60):
            while self.waiting < count:
                await asyncio.sleep(0.02)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        self.arrivals.append(time.monotonic())
        if request.path.startswith("/missing/") and request.path not in self.found:
            return web.Response(status=404, text="not here")
        self.waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        return web.Response(body=self.body, content_type="image/jpeg")


@asynccontextmanager
async def gated_host(open_gate: bool = False) -> AsyncIterator[GatedHost]:
    host = GatedHost()
    if open_gate:
        host.gate.set()
    async with loopback_server(host.handle) as host.server:
        try:
            yield host
        finally:
            host.gate.set()
