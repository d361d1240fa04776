"""Real local servers for the tests: an image host (aiohttp), the service (uvicorn), and the
many-process mode's PostgreSQL and S3 API (tests/backends.py)."""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image
from starlette.types import ASGIApp

from imgsvc.app import create_app
from imgsvc.config import Settings
from imgsvc.models import Product

from . import backends
from .backends import PostgresServer, S3Bucket, S3Server

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# A Standard Webhooks secret the tests configure, so they can verify signatures.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


# What CheckedLoop found open when it closed, for `no_socket_left_open` to report.
_left_open: list[str] = []


class CheckedLoop(asyncio.SelectorEventLoop):
    """The tests' event loop: it notes every socket still open on it when it closes, and
    closes it, so that the garbage collector does not find it again in a later test."""

    def close(self) -> None:
        # asyncio's own registry of the loop's socket transports, by file descriptor.
        made: Mapping[int, asyncio.Transport] = self._transports  # type: ignore[attr-defined]
        left_open = [t for t in made.values() if is_open(t)]
        if left_open and not self.is_closed():
            _left_open.extend(describe(t) for t in left_open)
            for transport in left_open:
                transport.abort()
            self.run_until_complete(asyncio.sleep(0))  # the turn in which the aborts finish
        super().close()


def is_open(transport: asyncio.BaseTransport) -> bool:
    """Not closed, or closed but not yet done with its socket: either way the garbage collector
    would find it unclosed (one whose socket was closed under it, too)."""
    return not transport.is_closing() or transport.get_extra_info("socket").fileno() != -1


def describe(transport: asyncio.BaseTransport) -> str:
    """Where a transport's socket connects, and what speaks on it."""
    protocol = type(transport.get_protocol())
    return (
        f"{transport.get_extra_info('sockname')} -> {transport.get_extra_info('peername')}"
        f" ({protocol.__module__}.{protocol.__qualname__})"
    )


@pytest.fixture(autouse=True)
def no_socket_left_open() -> Iterator[None]:
    """Fails a test whose event loop closes with a socket still open. Left alone, the socket
    is found only when the garbage collector frees its transport: later, in whichever test
    is running then."""
    yield
    assert not (left_open := sockets_left_open()), f"sockets left open: {left_open}"


def sockets_left_open() -> list[str]:
    """The sockets CheckedLoops found open when they closed, since the last call."""
    found = list(_left_open)
    _left_open.clear()
    return found


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "asyncio", {"loop_factory": CheckedLoop}


def jpeg_bytes(width: int, height: int, color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    """A JPEG with some structure, so compression has something to do."""
    image = Image.new("RGB", (width, height), color)
    gradient = Image.linear_gradient("L").resize((width, height))
    image.putalpha(gradient)
    flat = Image.new("RGB", (width, height), (255, 255, 255))
    flat.paste(image, mask=image.getchannel("A"))
    out = io.BytesIO()
    flat.save(out, "JPEG", quality=95)
    return out.getvalue()


@dataclass
class ImageHost:
    """An aiohttp server on 127.0.0.1 serving what a test puts on it, counting requests."""

    server: TestServer = field(init=False)  # set when the server starts
    bodies: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    handlers: dict[str, Handler] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def add(self, path: str, body: bytes, content_type: str = "image/jpeg") -> str:
        self.bodies[path] = (body, content_type)
        return self.url(path)

    def route(self, path: str, handler: Handler) -> str:
        self.handlers[path] = handler
        return self.url(path)

    def held(self, path: str, body: bytes) -> tuple[str, asyncio.Event]:
        """A URL whose image is served only once the returned event is set."""
        release = asyncio.Event()

        async def wait_then_serve(request: web.Request) -> web.Response:
            await release.wait()
            return web.Response(body=body, content_type="image/jpeg")

        return self.route(path, wait_then_serve), release

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        if request.path in self.handlers:
            return await self.handlers[request.path](request)
        if request.path not in self.bodies:
            return web.Response(status=404, text="no such image")
        body, content_type = self.bodies[request.path]
        return web.Response(body=body, content_type=content_type)


@asynccontextmanager
async def loopback_server(
    handle: Handler, host: str = "127.0.0.1", port: int = 0, method: str = "GET"
) -> AsyncIterator[TestServer]:
    """An aiohttp server on a loopback address sending every path to `handle`."""
    app = web.Application()
    app.router.add_route(method, "/{tail:.*}", handle)
    server = TestServer(app, host=host, port=port)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def image_host() -> AsyncIterator[ImageHost]:
    host = ImageHost()
    async with loopback_server(host.handle) as host.server:
        yield host


@dataclass
class Service:
    """The service running under uvicorn on 127.0.0.1, and a client session to call it."""

    url: str
    settings: Settings
    client: aiohttp.ClientSession
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request

    def with_key(self, key: str) -> Service:
        """The same service, called with `Authorization: Bearer key` (IMGSVC_API_KEYS)."""
        return self.with_headers({"Authorization": f"Bearer {key}"})

    def with_headers(self, headers: dict[str, str]) -> Service:
        """The same service, called with these headers too."""
        return replace(self, headers=self.headers | headers)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("POST", path, **kwargs)

    async def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """One request; its status and its body (JSON decoded, else bytes)."""
        sent = self.headers | (headers or {})
        async with self.client.request(method, self.url + path, headers=sent, **kwargs) as r:
            return r.status, await response_body(r)

    async def upload(self, csv_text: str, **fields: str) -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("file", csv_text.encode(), filename="products.csv", content_type="text/csv")
        for name, value in fields.items():
            form.add_field(name, value)
        return await self.post("/api/upload", data=form)

    async def wait(
        self, request_id: str, until: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        """Poll the status until `until` holds (by default: the job has ended); the status."""
        done = until or (lambda body: body["status"] in ("completed", "failed", "cancelled"))
        async with asyncio.timeout(30):
            while not done(body := (await self.get(f"/api/status/{request_id}"))[1]):
                await asyncio.sleep(0.05)
        return dict(body)


async def response_body(response: aiohttp.ClientResponse) -> Any:
    """The body, JSON-decoded when it is JSON."""
    if response.content_type == "application/json":
        return await response.json()
    return await response.read()


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port until the block ends; its URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the service did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[Service]:
    """Serve `settings` with uvicorn on a free port until the block ends."""
    async with serving(create_app(settings)) as url, aiohttp.ClientSession() as client:
        yield Service(url, settings, client)


def free_port() -> int:
    """A port nothing listens on right now, for a service started as a subprocess."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the database the service runs on in tests that do not choose one",
    )


# The database URL of the running test under `--database=postgres` (None: SQLite).
_test_database_url: str | None = None


@pytest.fixture(autouse=True)
def service_database(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Under `--database=postgres`, a new PostgreSQL database for each test, which
    `settings_for` and the environment (for the CLI) name unless the test chooses its own."""
    global _test_database_url  # settings_for is a plain function, called by tests
    if request.config.getoption("--database") != "postgres":
        yield
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    # No event loop runs while a plain fixture is set up: the template is made here.
    name = server.database(asyncio.run(server.template(migrated)))
    _test_database_url = server.url(name)
    monkeypatch.setenv("IMGSVC_DATABASE_URL", _test_database_url)
    try:
        yield
    finally:
        _test_database_url = None
        server.drop(name)


async def batches(products: list[Product], size: int = 1000) -> AsyncIterator[list[Product]]:
    """Products as `Database.create_job` takes them: in batches, as an upload is read."""
    for start in range(0, len(products), size):
        yield products[start : start + size]


def settings_for(data_dir: Path, **changes: Any) -> Settings:
    """Settings for a test: its own data folder, loopback image hosts allowed (and the
    database `--database` chose)."""
    return Settings(
        data_dir=data_dir, allow_private_urls=True, cpu_workers=2, database_url=_test_database_url
    ).with_(**changes)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async with running_service(settings_for(tmp_path / "data")) as running:
        yield running


Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Call:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    arrived: float  # time.monotonic()


@dataclass
class Receiver:
    """A webhook receiver: answers from a script (then 200), records every call."""

    server: TestServer = field(init=False)  # set when the server starts
    script: list[Answer] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends hanging answers

    def url(self, path: str = "/hook") -> str:
        return str(self.server.make_url(path))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.calls.append(Call(request.path, dict(request.headers), body, time.monotonic()))
        if self.script:
            return await self.script.pop(0)(request)
        return web.Response(text="thanks")

    async def hang(self, request: web.Request) -> web.StreamResponse:
        """An answer (for `script`) that comes only once the test sets `release`."""
        await self.release.wait()
        return web.Response(text="too late")

    async def wait_calls(self, count: int) -> list[Call]:
        async with asyncio.timeout(60):
            while len(self.calls) < count:
                await asyncio.sleep(0.05)
        return self.calls


def status(code: int, headers: dict[str, str] | None = None) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, text=f"answered {code}", headers=headers)

    return answer


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    async with loopback_server(found.handle, method="*") as found.server:
        yield found
        found.release.set()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster on a Unix socket, started when a test first asks for it."""
    with backends.postgres_server() as server:
        yield server


async def migrated(url: str) -> None:
    """Give the database at `url` the service's schema (a template's `prepare`)."""
    from imgsvc.db.postgres import PostgresDatabase

    database = await PostgresDatabase.open(url)
    await database.close()


@asynccontextmanager
async def postgres_database(server: PostgresServer) -> AsyncIterator[str]:
    """The URL of a new database with the service's schema, dropped when the block ends."""
    name = server.database(await server.template(migrated))
    try:
        yield server.url(name)
    finally:
        server.drop(name)


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """The URL of a new database with the service's schema for one test, dropped after it."""
    async with postgres_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An S3 API on 127.0.0.1, started when a test first asks for it."""
    with backends.s3_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> S3Bucket:
    """A new, empty bucket for one test."""
    return s3_server.bucket()
