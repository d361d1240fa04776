"""What every storage backend promises, checked on each of them alike.

A backend is added by writing one context manager that makes it (and the few ways a test
reaches behind it) and naming it in BACKENDS. The S3 backend gets a new bucket on the local
S3 API (tests/backends.py) and keeps its objects under a prefix; `plant` puts objects
beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO, TypeVar

import aiohttp
import obstore
import pytest
from obstore.store import S3Store
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from imgsvc.errors import ApiError
from imgsvc.storage import IMMUTABLE, Storage, image_name, output_names
from imgsvc.storage.local import LocalStorage
from imgsvc.storage.s3 import S3Storage

from ..backends import S3Bucket
from ..conftest import jpeg_bytes, serving

pytestmark = pytest.mark.anyio

T = TypeVar("T")

JOB = "0123456789abcdef0123456789abcdef"
SECRET = b"SECRET: stored beside the images, never served"


@dataclass
class Backend:
    """A started backend, and what a test needs to reach behind it."""

    storage: Storage
    held: Callable[[], set[str]]  # every file or object it holds, temp ones included
    plant: Callable[[str, bytes], None]  # raw bytes at a path beside the store's own files
    refuse_writes: Callable[[], None]  # make the store unable to take writes
    mend: Callable[[], None]  # undo refuse_writes


@asynccontextmanager
async def local_backend(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    root = tmp_path / "data"
    storage = LocalStorage(root)
    await storage.start()
    (root / "imgsvc.db").write_bytes(SECRET)  # what sits beside the images in a data folder

    def held() -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {"imgsvc.db"}

    def plant(path: str, data: bytes) -> None:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def refuse_writes() -> None:  # a permission would not stop root: take the folder away
        shutil.rmtree(root / "tmp")
        (root / "tmp").write_text("a file where the temp folder should be")

    def mend() -> None:
        (root / "tmp").unlink()
        (root / "tmp").mkdir()

    try:
        yield Backend(storage, held, plant, refuse_writes, mend)
    finally:
        await storage.close()


@asynccontextmanager
async def s3_backend(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")  # moto starts only when asked
    server, prefix = bucket.server, "deep/prefix"
    storage = S3Storage(f"s3://{bucket.name}/{prefix}", server.endpoint, tmp_path / "tmp")
    await storage.start()
    # The test reaches the bucket as a second client would: the whole bucket, no prefix.
    whole = S3Store(
        bucket.name,
        endpoint=server.endpoint,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    obstore.put(whole, "imgsvc.db", SECRET)  # outside the prefix: never reachable

    def held() -> set[str]:
        objects = {e["path"] for batch in obstore.list(whole) for e in batch} - {"imgsvc.db"}
        temp = {f"tmp/{p.name}" for p in (tmp_path / "tmp").iterdir()}
        return {o.removeprefix(f"{prefix}/") for o in objects} | temp

    def plant(path: str, data: bytes) -> None:
        obstore.put(whole, f"{prefix}/{path}", data)

    def refuse_writes() -> None:  # the bucket is gone: emptied, then deleted
        obstore.delete(whole, [e["path"] for batch in obstore.list(whole) for e in batch])
        _unsigned("DELETE", f"{server.endpoint}/{bucket.name}")

    def mend() -> None:
        _unsigned("PUT", f"{server.endpoint}/{bucket.name}")

    try:
        yield Backend(storage, held, plant, refuse_writes, mend)
    finally:
        await storage.close()


def _unsigned(method: str, url: str) -> None:
    """A request to the S3 API that needs no signature (moto checks none), without a proxy."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(urllib.request.Request(url, method=method), timeout=10) as answer:
        assert answer.status in (200, 204)


BACKENDS: dict[
    str, Callable[[Path, pytest.FixtureRequest], AbstractAsyncContextManager[Backend]]
] = {
    "local": local_backend,
    "s3": s3_backend,
}


@pytest.fixture(params=list(BACKENDS))
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Backend]:
    if request.param == "s3":  # obstore reads the credentials from the environment
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        for name, value in bucket.environ().items():
            monkeypatch.setenv(name, value)
    async with BACKENDS[request.param](tmp_path, request) as made:
        yield made


@dataclass
class Web:
    """An HTTP client of the routes that serve a backend."""

    url: str
    client: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request; its status, headers (any case) and body."""
        async with self.client.request(method, self.url + path, headers=headers) as response:
            return response.status, response.headers, await response.read()


@pytest.fixture
async def web(backend: Backend) -> AsyncIterator[Web]:
    """The backend's answers served over HTTP, as the service's routes serve them."""
    storage = backend.storage

    async def image(request: Request) -> Response:
        return await storage.image_response(request.path_params["name"], request)

    async def results(request: Request) -> Response:
        return await storage.results_response(request.path_params["job_id"])

    async def refusal(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), exc.status)

    app = Starlette(
        routes=[Route("/image/{name:path}", image), Route("/results/{job_id:path}", results)],
        exception_handlers={ApiError: refusal},
    )
    async with serving(app) as url, aiohttp.ClientSession() as client:
        yield Web(url, client)


def every_byte_escaped(name: str) -> str:
    """`name` as a URL path segment that reaches the route exactly as it is written."""
    return "".join(f"%{byte:02X}" for byte in name.encode())


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2, thread_name_prefix="pillow") as made:
        yield made


def writing(data: bytes) -> Callable[[BinaryIO], str]:
    """An encode that writes `data` into a real file and says which thread it ran in."""

    def encode(out: BinaryIO) -> str:
        os.fstat(out.fileno())  # a real file: Pillow releases the GIL only then
        out.write(data)
        return threading.current_thread().name

    return encode


def one(encode: Callable[[BinaryIO], T]) -> Callable[[Sequence[BinaryIO]], T]:
    """An encode of several files that writes the only one with `encode`."""

    def encode_one(outs: Sequence[BinaryIO]) -> T:
        (out,) = outs
        return encode(out)

    return encode_one


def writing_text(text: str) -> Callable[[TextIO], None]:
    """A results writer that writes `text`."""

    def write(out: TextIO) -> None:
        out.write(text)

    return write


async def put(backend: Backend, pool: ThreadPoolExecutor, data: bytes, url: str = "u") -> str:
    name = image_name(JOB, url, "jpg")
    await backend.storage.put_images([name], one(writing(data)), pool)
    return name


async def read(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def test_a_stored_image_is_served_whole_and_cached_for_good(
    backend: Backend, web: Web, pool: ThreadPoolExecutor
) -> None:
    data = jpeg_bytes(300, 200)
    name = image_name(JOB, "http://img.example/a.jpg", "jpg")
    ran_in, [size] = await backend.storage.put_images([name], one(writing(data)), pool)
    assert ran_in.startswith("pillow"), "encode runs in the pool it was given"
    assert size == len(data)

    status, headers, body = await web.call("GET", f"/image/{name}")
    assert (status, body) == (200, data)
    etag = f'"{name.removesuffix(".jpg")}"'
    assert headers["ETag"] == etag
    assert headers["Cache-Control"] == IMMUTABLE
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["Content-Length"] == str(len(data))

    status, head_headers, body = await web.call("HEAD", f"/image/{name}")
    assert (status, body) == (200, b"")
    assert (head_headers["ETag"], head_headers["Content-Length"]) == (etag, str(len(data)))

    for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        status, headers, body = await web.call("GET", f"/image/{name}", {"If-None-Match": sent})
        assert (status, body, headers["ETag"]) == (304, b"", etag), sent
    status, _, body = await web.call("GET", f"/image/{name}", {"If-None-Match": '"other"'})
    assert (status, body) == (200, data)


async def test_webp_is_served_as_webp(backend: Backend, web: Web, pool: ThreadPoolExecutor) -> None:
    name = image_name(JOB, "http://img.example/a.png", "webp")
    await backend.storage.put_images([name], one(writing(b"RIFF....WEBP")), pool)
    status, headers, _ = await web.call("GET", f"/image/{name}")
    assert (status, headers["Content-Type"]) == (200, "image/webp")


def hostile_names(name: str) -> list[str]:
    """Names that try to reach something other than a stored image."""
    stem = name.removesuffix(".jpg")
    return [
        image_name(JOB, "never stored", "jpg"),
        f"{stem}.png",
        f"{stem}.JPG",
        f"{name}.part",
        f"{name}\x00.jpg",
        "imgsvc.db",
        "../imgsvc.db",
        "../../secret.jpg",
        "..\\secret.jpg",
        f"{name[0]}/{name}",  # the image by its place on disk
        f"images/{name[0]}/{name}",
        f"./{name}",
        f"{name}/.",
        "/etc/passwd",
        "~/secret.jpg",
        "secret.jpg",
        f"tmp/{name}.part",
        f"results/{JOB}.csv",
        ".jpg",
        "a" * 65 + ".jpg",
        "..",
        ".",
    ]


async def test_names_not_ours_are_404_and_nothing_outside_is_served(
    backend: Backend, web: Web, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    name = await put(backend, pool, jpeg_bytes(40, 40))
    await backend.storage.put_results(JOB, writing_text("a,b\r\n"))
    backend.plant("secret.jpg", SECRET)
    backend.plant(f"tmp/{name}.part", SECRET)
    (tmp_path / "secret.jpg").write_bytes(SECRET)
    assert (await web.call("GET", f"/image/{name}"))[0] == 200  # the refusals mean something

    for hostile in hostile_names(name):
        for method in ("GET", "HEAD"):
            status, _, body = await web.call(method, f"/image/{every_byte_escaped(hostile)}")
            assert status == 404, (method, hostile)
            assert SECRET not in body, hostile
            assert b"\xff\xd8" not in body, hostile  # no image either
        with pytest.raises(FileNotFoundError):
            await read(backend.storage.image_chunks(hostile))
    for job_id in (f"../{JOB}", f"{JOB}.csv", f"../tmp/{JOB}", "nope", ".."):
        assert (await web.call("GET", f"/results/{every_byte_escaped(job_id)}"))[0] == 404
        with pytest.raises(FileNotFoundError):
            await read(backend.storage.results_chunks(job_id))


async def test_a_failed_encode_leaves_nothing_behind(
    backend: Backend, web: Web, pool: ThreadPoolExecutor
) -> None:
    before = backend.held()
    name = image_name(JOB, "http://img.example/broken.jpg", "jpg")

    def half_then_fail(out: BinaryIO) -> None:
        out.write(jpeg_bytes(200, 200)[:500])
        raise ValueError("not an image after all")

    with pytest.raises(ValueError, match="not an image after all"):
        await backend.storage.put_images([name], one(half_then_fail), pool)
    assert backend.held() == before
    assert (await web.call("GET", f"/image/{name}"))[0] == 404
    with pytest.raises(FileNotFoundError):
        await read(backend.storage.image_chunks(name))


async def test_several_images_are_stored_by_one_encode(
    backend: Backend, web: Web, pool: ThreadPoolExecutor
) -> None:
    main = image_name(JOB, "http://img.example/sized.jpg", "jpg")
    names = output_names(main, [800, 300])
    pictures = [jpeg_bytes(900, 600), jpeg_bytes(800, 533), jpeg_bytes(300, 200)]

    def encode(outs: Sequence[BinaryIO]) -> int:
        for out, data in zip(outs, pictures, strict=True):
            out.write(data)
        return len(outs)

    count, sizes = await backend.storage.put_images(names, encode, pool)
    assert (count, sizes) == (3, [len(p) for p in pictures])
    assert names[1:] == [main.replace(".jpg", "_800.jpg"), main.replace(".jpg", "_300.jpg")]
    for name, data in zip(names, pictures, strict=True):
        status, _, body = await web.call("GET", f"/image/{name}")
        assert (status, body) == (200, data)
    await backend.storage.remove_images(names)
    for name in names:
        assert (await web.call("GET", f"/image/{name}"))[0] == 404


async def test_a_failed_encode_of_several_stores_none_of_them(
    backend: Backend, web: Web, pool: ThreadPoolExecutor
) -> None:
    before = backend.held()
    names = output_names(image_name(JOB, "http://img.example/half.jpg", "jpg"), [100])

    def first_then_fail(outs: Sequence[BinaryIO]) -> None:
        outs[0].write(jpeg_bytes(200, 200))
        raise ValueError("the second could not be made")

    with pytest.raises(ValueError, match="second"):
        await backend.storage.put_images(names, first_then_fail, pool)
    assert backend.held() == before
    for name in names:
        assert (await web.call("GET", f"/image/{name}"))[0] == 404


async def settled_whole_or_absent(backend: Backend, name: str, data: bytes) -> set[str]:
    """After a cancelled put: the image is whole or absent, and nothing appears later.
    What the backend holds then."""
    held = backend.held()
    try:
        stored: bytes | None = await read(backend.storage.image_chunks(name))
    except FileNotFoundError:
        stored = None
    assert stored in (data, None)
    await asyncio.sleep(0.1)
    assert backend.held() == held, "something appeared after the cancel"
    return held


async def test_a_cancelled_put_returns_once_its_write_has_ended(
    backend: Backend, pool: ThreadPoolExecutor
) -> None:
    data = jpeg_bytes(100, 100)
    started, release = threading.Event(), threading.Event()

    def slow(out: BinaryIO) -> None:
        started.set()
        release.wait(10)
        out.write(data)

    name = image_name(JOB, "http://img.example/slow.jpg", "jpg")
    put_task = asyncio.create_task(backend.storage.put_images([name], one(slow), pool))
    await asyncio.to_thread(started.wait, 10)
    put_task.cancel()
    await asyncio.sleep(0.2)
    assert not put_task.done(), "the cancel waits for the write it cannot stop"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await put_task
    # Nothing appears after the cancel: the image is whole, or absent (a caller removes it).
    await settled_whole_or_absent(backend, name, data)


async def test_a_put_cancelled_as_its_encode_ends_stores_nothing_afterwards(
    backend: Backend, pool: ThreadPoolExecutor
) -> None:
    data = os.urandom(1024 * 1024)
    # Cancels at a few moments after the encode: before, during and after the write into
    # storage (an upload to a bucket takes some milliseconds).
    for number, delay in enumerate((0, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02)):
        encoded = threading.Event()

        def encode(out: BinaryIO, encoded: threading.Event = encoded) -> None:
            out.write(data)
            encoded.set()

        name = image_name(JOB, f"http://img.example/{number}.jpg", "jpg")
        put_task = asyncio.create_task(backend.storage.put_images([name], one(encode), pool))
        await asyncio.to_thread(encoded.wait, 10)
        await asyncio.sleep(delay)
        put_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await put_task
        held = await settled_whole_or_absent(backend, name, data)
        assert not [path for path in held if path.startswith("tmp/")], delay


async def test_results_download_and_replace(backend: Backend, web: Web) -> None:
    text = "S. No.,Product Name,Output Image Urls\r\n1,Café,http://x/a.jpg\r\n"
    await backend.storage.put_results(JOB, writing_text(text))
    status, headers, body = await web.call("GET", f"/results/{JOB}")
    assert (status, body) == (200, text.encode())
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    assert headers["Content-Disposition"] == f'attachment; filename="results-{JOB}.csv"'
    assert await read(backend.storage.results_chunks(JOB)) == text.encode()

    def fails(out: object) -> None:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        await backend.storage.put_results(JOB, fails)
    assert (await web.call("GET", f"/results/{JOB}"))[2] == text.encode(), "the old one stays"
    await backend.storage.put_results(JOB, writing_text("replaced\r\n"))
    assert (await web.call("GET", f"/results/{JOB}"))[2] == b"replaced\r\n"
    status, _, body = await web.call("GET", f"/results/{'f' * 32}")
    assert status == 404
    assert b"not_found" in body


async def test_removed_files_are_gone(backend: Backend, web: Web, pool: ThreadPoolExecutor) -> None:
    kept, gone = await put(backend, pool, b"kept", "k"), await put(backend, pool, b"gone", "g")
    await backend.storage.put_results(JOB, writing_text("a\r\n"))
    never = image_name(JOB, "never stored", "jpg")
    await backend.storage.remove_images([gone, never, "../imgsvc.db"])
    await backend.storage.remove_results(JOB)
    await backend.storage.remove_results(JOB)  # removing twice is fine
    assert (await web.call("GET", f"/image/{gone}"))[0] == 404
    assert (await web.call("GET", f"/results/{JOB}"))[0] == 404
    assert (await web.call("GET", f"/image/{kept}"))[2] == b"kept"
    assert len(backend.held()) == 1


async def test_a_copy_outlives_its_source(
    backend: Backend, web: Web, pool: ThreadPoolExecutor
) -> None:
    data = jpeg_bytes(80, 60)
    source = await put(backend, pool, data, "source")
    copy = image_name("f" * 32, "source", "jpg")  # another job's name for the same URL
    await backend.storage.copy_image(source, copy)
    await backend.storage.copy_image(source, copy)  # again, as a redone slice would: the same

    await backend.storage.remove_images([source])

    status, headers, body = await web.call("GET", f"/image/{copy}")
    assert (status, body, headers["Content-Type"]) == (200, data, "image/jpeg")
    assert (await web.call("GET", f"/image/{source}"))[0] == 404
    assert len(backend.held()) == 1  # no temp file is left behind
    with pytest.raises(FileNotFoundError):
        await backend.storage.copy_image(source, image_name("e" * 32, "source", "jpg"))
    with pytest.raises(FileNotFoundError):
        await backend.storage.copy_image("../imgsvc.db", image_name("e" * 32, "x", "jpg"))


async def test_not_ready_while_writes_are_refused(
    backend: Backend, pool: ThreadPoolExecutor
) -> None:
    assert await backend.storage.ready()
    backend.refuse_writes()
    assert not await backend.storage.ready()
    # OSError is the contract; its message is the store's own (a disk's, a bucket's).
    with pytest.raises(OSError):  # noqa: PT011
        await put(backend, pool, b"x")
    backend.mend()
    assert await backend.storage.ready()
    await put(backend, pool, b"x")


async def test_streams_give_the_stored_bytes(backend: Backend, pool: ThreadPoolExecutor) -> None:
    large = os.urandom(6 * 1024 * 1024 + 7)  # several chunks; in a bucket, a multipart upload
    small = jpeg_bytes(50, 50)
    names = [await put(backend, pool, large, "large"), await put(backend, pool, small, "small")]
    chunks = [chunk async for chunk in backend.storage.image_chunks(names[0])]
    assert len(chunks) > 1
    assert b"".join(chunks) == large
    assert await read(backend.storage.image_chunks(names[1])) == small
    csv_text = "x,y\r\n" * 100_000
    await backend.storage.put_results(JOB, writing_text(csv_text))
    assert await read(backend.storage.results_chunks(JOB)) == csv_text.encode()
    with pytest.raises(FileNotFoundError):
        await read(backend.storage.results_chunks("f" * 32))


async def test_a_copy_in_the_data_folder_is_a_link_or_else_a_copy(
    tmp_path: Path, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path)
    await storage.start()
    source = image_name(JOB, "source", "jpg")
    await storage.put_images([source], one(writing(b"bytes")), pool)
    linked, copied = image_name("f" * 32, "source", "jpg"), image_name("e" * 32, "source", "jpg")
    await storage.copy_image(source, linked)

    def too_many_links(src: object, dst: object) -> None:
        raise OSError(errno.EMLINK, "Too many links")

    monkeypatch.setattr(os, "link", too_many_links)
    await storage.copy_image(source, copied)

    files = {name: tmp_path / "images" / name[0] / name for name in (source, linked, copied)}
    assert {name: path.read_bytes() for name, path in files.items()} == dict.fromkeys(
        files, b"bytes"
    )
    assert files[linked].stat().st_ino == files[source].stat().st_ino
    assert files[copied].stat().st_ino != files[source].stat().st_ino
