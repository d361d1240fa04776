"""Re-runs of a catalogue through the live service: unchanged images reuse the earlier job's
output, with no full download (the host answers 304) and no encode; changed ones are made
again; nothing is shared between API keys; reuse=false makes everything again."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from ..conftest import Service, jpeg_bytes, loopback_server, running_service, settings_for

pytestmark = pytest.mark.anyio

HEADER = "S. No.,Product Name,Input Image Urls\n"
LAST_MODIFIED = "Mon, 02 Nov 2026 10:00:00 GMT"
KEYS = ("key-one-0123456789abcdef", "key-two-0123456789abcdef")


@dataclass
class CatalogueHost:
    """An image host that names each image by an ETag and a Last-Modified (unless
    `validators` is off), answers 304 to a request that names the current ETag, and counts
    full answers (200 with a body) and 304s per path."""

    validators: bool = True
    url: str = ""
    bodies: dict[str, bytes] = field(default_factory=dict)
    full: Counter[str] = field(default_factory=Counter)
    not_modified: Counter[str] = field(default_factory=Counter)

    async def handle(self, request: web.Request) -> web.Response:
        body = self.bodies.get(request.path)
        if body is None:
            return web.Response(status=404)
        headers = {}
        if self.validators:
            headers = {"ETag": f'"{hashlib.sha256(body).hexdigest()[:16]}"',
                       "Last-Modified": LAST_MODIFIED}  # fmt: skip
            if request.headers.get("If-None-Match") == headers["ETag"]:
                self.not_modified[request.path] += 1
                return web.Response(status=304, headers=headers)
        self.full[request.path] += 1
        return web.Response(body=body, content_type="image/jpeg", headers=headers)

    def catalogue(self, count: int) -> str:
        """A CSV of `count` products, each with its own image and the first product's."""
        for n in range(count):
            self.bodies.setdefault(f"/img/{n}.jpg", jpeg_bytes(60 + n, 40, (n * 40 % 256, 90, 30)))
        rows = [f"{n + 1},SKU{n},{self.url}/img/{n}.jpg {self.url}/img/0.jpg" for n in range(count)]
        return HEADER + "\n".join(rows) + "\n"

    def forget(self) -> None:
        self.full.clear()
        self.not_modified.clear()


async def host_of(validators: bool = True) -> AsyncIterator[CatalogueHost]:
    host = CatalogueHost(validators)
    async with loopback_server(host.handle) as server:
        host.url = str(server.make_url("")).rstrip("/")
        yield host


@pytest.fixture
async def host() -> AsyncIterator[CatalogueHost]:
    async for running in host_of():
        yield running


async def encodes(service: Service) -> float:
    """How many images this process has decoded and encoded, from /metrics."""
    _, text = await service.get("/metrics")
    found = re.search(rb"^imgsvc_compress_seconds_count (\S+)$", text, re.MULTILINE)
    assert found is not None
    return float(found[1])


async def run(service: Service, csv_text: str, **fields: str) -> dict[str, Any]:
    """Upload and wait for the end; the details."""
    status, answer = await service.upload(csv_text, **fields)
    assert status == 202, answer
    assert (await service.wait(answer["request_id"]))["status"] == "completed"
    return (await service.get(f"/api/details/{answer['request_id']}"))[1]  # type: ignore[no-any-return]


def images_of(details: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for p in details["products"] for i in p["images"]]


def reused(details: dict[str, Any]) -> dict[str, bool]:
    """Whether each input URL was reused."""
    return {i["input_url"]: i["reused"] for p in details["products"] for i in p["images"]}


async def results_images(service: Service, job_id: str) -> list[bytes]:
    """Every image the results CSV points at, fetched through its URL."""
    status, body = await service.get(f"/api/download/{job_id}")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    urls = [u for row in rows for u in row["Output Image Urls"].split(",")]
    assert rows
    assert all(urls)
    images = []
    for url in urls:
        status, image = await service.get(urlsplit(url).path)  # the service may have moved
        assert status == 200, url
        images.append(image)
    return images


async def test_an_unchanged_catalogue_is_reused_without_downloads_or_encodes(
    service: Service, host: CatalogueHost
) -> None:
    catalogue = host.catalogue(4)
    first = await run(service, catalogue)
    assert host.full.total() == 4  # each distinct URL once
    assert not any(reused(first).values())
    host.forget()
    before = await encodes(service)

    second = await run(service, catalogue)

    assert host.full.total() == 0
    assert host.not_modified.total() == 4
    assert await encodes(service) == before
    assert all(reused(second).values())
    assert second["progress"]["reused_images"] == second["progress"]["succeeded_images"] == 8
    assert second["message"] == "completed: 8 of 8 images produced (8 unchanged, reused)"
    assert first["progress"]["reused_images"] == 0
    # The re-run's outputs are its own names with the first run's bytes and sizes.
    assert await results_images(service, second["request_id"]) == await results_images(
        service, first["request_id"]
    )
    described = ("bytes_in", "bytes_out", "width", "height")
    olds, news = images_of(first), images_of(second)
    assert [[i[k] for k in described] for i in olds] == [[i[k] for k in described] for i in news]
    assert not {i["output_url"] for i in olds} & {i["output_url"] for i in news}


async def test_a_rerun_with_sizes_reuses_every_size_and_other_sizes_make_them_again(
    service: Service, host: CatalogueHost
) -> None:
    catalogue = host.catalogue(2)
    first = await run(service, catalogue, sizes="30,10")
    host.forget()
    before = await encodes(service)

    second = await run(service, catalogue, sizes="30,10")

    assert host.full.total() == 0
    assert await encodes(service) == before
    assert all(reused(second).values())
    for old, new in zip(images_of(first), images_of(second), strict=True):
        assert len(new["renditions"]) == 2
        for was, now in zip(old["renditions"], new["renditions"], strict=True):
            assert {k: v for k, v in now.items() if k != "output_url"} == {
                k: v for k, v in was.items() if k != "output_url"
            }
            assert now["output_url"] != was["output_url"]  # the re-run's own file
            status_was, bytes_was = await service.get(urlsplit(was["output_url"]).path)
            status_now, bytes_now = await service.get(urlsplit(now["output_url"]).path)
            assert status_was == status_now == 200
            assert bytes_now == bytes_was
    host.forget()

    other = await run(service, catalogue, sizes="20")  # other outputs: nothing to reuse
    assert not any(reused(other).values())
    assert host.full.total() == 2


async def test_a_changed_image_is_made_again_and_becomes_the_one_reused(
    service: Service, host: CatalogueHost
) -> None:
    catalogue = host.catalogue(3)
    await run(service, catalogue)
    host.bodies["/img/2.jpg"] = jpeg_bytes(90, 50, (10, 200, 10))
    host.forget()
    before = await encodes(service)

    second = await run(service, catalogue)

    assert host.full == Counter({"/img/2.jpg": 1})
    assert await encodes(service) == before + 1
    assert reused(second) == {f"{host.url}/img/{n}.jpg": n != 2 for n in range(3)}
    (changed,) = [i for i in images_of(second) if not i["reused"]]
    assert changed["width"] == 90
    host.forget()

    third = await run(service, catalogue)
    assert host.full.total() == 0
    assert all(reused(third).values())


async def test_an_owner_never_reuses_another_owners_outputs(
    tmp_path: Path, host: CatalogueHost
) -> None:
    catalogue = host.catalogue(2)
    async with running_service(settings_for(tmp_path / "data", api_keys=KEYS)) as running:
        one, two = running.with_key(KEYS[0]), running.with_key(KEYS[1])
        await run(one, catalogue)
        host.forget()

        other = await run(two, catalogue)
        assert host.full.total() == 2
        assert not any(reused(other).values())
        assert other["progress"]["reused_images"] == 0
        host.forget()

        again = await run(one, catalogue)
        assert host.full.total() == 0
        assert all(reused(again).values())


async def test_reuse_false_makes_every_image_again(service: Service, host: CatalogueHost) -> None:
    catalogue = host.catalogue(3)
    await run(service, catalogue)
    host.forget()
    before = await encodes(service)

    forced = await run(service, catalogue, reuse="false")

    assert host.full.total() == 3
    assert host.not_modified.total() == 0
    assert await encodes(service) == before + 3
    assert not any(reused(forced).values())
    assert forced["progress"]["reused_images"] == 0


async def test_the_same_bytes_from_a_host_without_validators_are_reused(
    service: Service,
) -> None:
    async for plain in host_of(validators=False):
        catalogue = plain.catalogue(3)
        await run(service, catalogue)
        plain.forget()
        before = await encodes(service)

        second = await run(service, catalogue)

        assert plain.full.total() == 3  # nothing to ask with: downloaded, compared, kept
        assert await encodes(service) == before
        assert all(reused(second).values())
        assert len(await results_images(service, second["request_id"])) == 6


@pytest.mark.parametrize("validators", [True, False], ids=["304", "same-bytes"])
async def test_unchanged_images_whose_earlier_outputs_are_gone_are_made_again(
    tmp_path: Path, validators: bool
) -> None:
    data = tmp_path / "data"
    async for plain in host_of(validators):
        catalogue = plain.catalogue(3)
        async with running_service(settings_for(data)) as running:
            await run(running, catalogue)
            for image in (data / "images").glob("*/*"):
                image.unlink()  # an operator cleared the outputs: nothing is left to reuse
            before = await encodes(running)

            second = await run(running, catalogue)

            assert await encodes(running) == before + 3
            assert not any(reused(second).values())
            assert len(await results_images(running, second["request_id"])) == 6


async def test_the_rerun_keeps_its_images_when_retention_removes_the_first_job(
    tmp_path: Path, host: CatalogueHost
) -> None:
    data = tmp_path / "data"
    catalogue = host.catalogue(3)
    async with running_service(settings_for(data)) as running:
        first = await run(running, catalogue)
        second = await run(running, catalogue)
        assert all(reused(second).values())
        images = await results_images(running, second["request_id"])
    await make_old(settings_for(data).database_url, data, first["request_id"])

    async with running_service(settings_for(data, retention_days=1)) as running:
        async with asyncio.timeout(30):  # the sweep runs at start
            while (await running.get(f"/api/status/{first['request_id']}"))[0] != 404:
                await asyncio.sleep(0.05)
        assert await results_images(running, second["request_id"]) == images
        host.forget()
        third = await run(running, catalogue)  # reuses the re-run's outputs now
        assert host.full.total() == 0
        assert all(reused(third).values())


async def make_old(database_url: str | None, data: Path, job_id: str) -> None:
    """Make a job look as if it ended ten days ago."""
    if database_url:
        import psycopg

        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as pg:
            await pg.execute(
                "UPDATE jobs SET completed_at = completed_at - interval '10 days' WHERE id = %s",
                (job_id,),
            )
        return
    import sqlite3

    with sqlite3.connect(data / "imgsvc.db") as db:
        db.execute(
            "UPDATE jobs SET completed_at = '2000-01-01T00:00:00.000Z' WHERE id = ?", (job_id,)
        )
    db.close()
