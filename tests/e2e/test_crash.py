"""kill -9 at random moments while jobs run, then restart: nothing is lost or produced twice.

`make test` runs a few rounds; `make crashtest` runs many (IMGSVC_CRASH_ROUNDS). A failure
prints the seed; IMGSVC_CRASH_SEED replays it.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from imgsvc.storage import image_name

from ..conftest import jpeg_bytes, loopback_server
from ..served import ENDED, Served, image_files, kill_9, query, results_rows, served, service_env

ROUNDS = int(os.environ.get("IMGSVC_CRASH_ROUNDS", "6"))
SEED = int(os.environ.get("IMGSVC_CRASH_SEED", str(random.randrange(2**32))))
PRODUCTS_PER_JOB = 100
URLS_PER_PRODUCT = 3

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180 + ROUNDS * 20)]


@pytest.fixture
async def slow_host() -> AsyncIterator[TestServer]:
    """Images of a few hundred pixels, each answered after a random short delay, so a kill
    lands mid-download as often as mid-compression, mid-write or mid-commit."""
    rng = random.Random(SEED)
    bodies = [jpeg_bytes(rng.randint(150, 600), rng.randint(150, 600)) for _ in range(24)]

    async def handle(request: web.Request) -> web.Response:
        name = request.path.removeprefix("/img/")
        if name.startswith("missing"):
            return web.Response(status=404, text="no such image")
        await asyncio.sleep(random.uniform(0, 0.03))
        return web.Response(body=bodies[sum(name.encode()) % len(bodies)],
                            content_type="image/jpeg")  # fmt: skip

    async with loopback_server(handle) as server:
        yield server


def job_csv(host: TestServer, job_no: int, rng: random.Random) -> str:
    """100 products of 3 URLs: some URLs missing (404), some repeated within the job."""
    lines = ["S. No.,Product Name,Input Image Urls"]
    previous = ""
    for product in range(PRODUCTS_PER_JOB):
        urls = []
        for position in range(URLS_PER_PRODUCT):
            roll = rng.random()
            if roll < 0.04:
                name = f"missing-{job_no}-{product}-{position}.jpg"
            elif roll < 0.08 and previous:
                urls.append(previous)
                continue
            else:
                name = f"{job_no}-{product}-{position}.jpg"
            previous = str(host.make_url(f"/img/{name}"))
            urls.append(previous)
        lines.append(f'{product + 1},SKU-{job_no}-{product},"{",".join(urls)}"')
    return "\n".join(lines) + "\n"


async def upload(running: Served, text: str) -> str | None:
    """The job id if the upload was acknowledged; None if the kill came first."""
    try:
        status, body = await running.upload(text)
    except aiohttp.ClientError:
        return None
    assert status == 202, body
    return str(body["request_id"])


async def test_kill_9_at_random_moments_loses_nothing(
    tmp_path: Path, slow_host: TestServer
) -> None:
    rng = random.Random(SEED)
    data = tmp_path / "data"
    env = service_env()
    acknowledged: list[str] = []
    temp_left = 0
    for round_no in range(ROUNDS):
        leftovers = list((data / "tmp").glob("*")) if (data / "tmp").exists() else []
        if leftovers or round_no == 1:  # and one planted, so the clean-up is always seen
            leftovers.append(data / "tmp" / "planted.part")
            leftovers[-1].write_bytes(b"half an image")
        async with served(data, env) as running:
            assert not any(p.exists() for p in leftovers), "temp files survived a start"
            sending = None
            if round_no < 2 or rng.random() < 0.6:
                sending = asyncio.create_task(upload(running, job_csv(slow_host, round_no, rng)))
            await asyncio.sleep(rng.uniform(0.05, 2.5))
            kill_9(running)
            assert await running.exit_code() == -signal.SIGKILL
            if sending is not None and (job_id := await sending):
                acknowledged.append(job_id)
        temp_left += any((data / "tmp").glob("*"))

    async with served(data, env) as running:
        jobs = await wait_all_ended(running)
        await check_served_images(running, data)
        running.signal(signal.SIGTERM)
        assert await running.exit_code() == 0

    lost, duplicated, images = check_accounts(data, acknowledged, jobs)
    print(
        f"\ncrash loop (seed {SEED}): {ROUNDS} kill -9 rounds, {len(jobs)} jobs "
        f"({len(acknowledged)} acknowledged), {images} images, lost {lost}, "
        f"duplicated {duplicated}, rounds that left temp files {temp_left}"
    )
    assert acknowledged, "no upload was acknowledged before a kill: nothing was checked"
    assert images > 0
    assert (lost, duplicated) == (0, 0)
    assert not list((data / "tmp").glob("*"))


async def wait_all_ended(running: Served) -> list[str]:
    async with asyncio.timeout(120 + ROUNDS * 10):
        while True:
            status, body = await running.get("/api/jobs?limit=500")
            assert status == 200
            if all(j["status"] in ENDED for j in body["jobs"]):
                return [j["request_id"] for j in body["jobs"]]
            await asyncio.sleep(0.2)


async def check_served_images(running: Served, data: Path) -> None:
    """Every recorded output is served whole: the bytes recorded, and Pillow decodes it all."""
    rows = query(data, "SELECT DISTINCT output_name, bytes_out FROM images "
                       "WHERE status = 'succeeded'")  # fmt: skip
    for name, size in rows:
        status, body = await running.get(f"/api/image/{name}")
        assert status == 200
        assert len(body) == size
        with Image.open(io.BytesIO(body)) as image:
            image.load()


def check_accounts(data: Path, acknowledged: list[str], jobs: list[str]) -> tuple[int, int, int]:
    """(images lost, outputs produced twice, images accepted) over every job in the folder."""
    assert set(acknowledged) <= set(jobs), "an acknowledged job is missing"
    lost = duplicated = images = 0
    for job_id in jobs:
        ((status, message, total, done, ok, failed, products, products_done),) = query(
            data, "SELECT status, message, total_images, processed_images, succeeded_images, "
            "failed_images, total_products, processed_products FROM jobs WHERE id = ?", job_id,
        )  # fmt: skip
        assert (status, message) == ("completed", "")
        rows = query(data, "SELECT url, status, output_name, error_code FROM images "
                           "WHERE job_number = (SELECT number FROM jobs WHERE id = ?) "
                           "ORDER BY product_seq, position", job_id)  # fmt: skip
        images += len(rows)
        lost += total - len(rows) + sum(r[1] not in ("succeeded", "failed") for r in rows)
        for url, image_status, output, code in rows:
            if "/img/missing" in url:
                assert (image_status, output, code) == ("failed", None, "http_error")
            else:
                assert (image_status, output) == ("succeeded", image_name(job_id, url, "jpg"))
        assert (done, ok, failed) == (total, sum(r[1] == "succeeded" for r in rows),
                                      sum(r[1] == "failed" for r in rows))  # fmt: skip
        assert products_done == products
        check_results(data, job_id, rows, products)
    referenced = query(data, "SELECT output_name, COUNT(DISTINCT job_number || ' ' || url) "
                             "FROM images "
                             "WHERE output_name IS NOT NULL GROUP BY output_name")  # fmt: skip
    duplicated += sum(count - 1 for _, count in referenced)
    files = image_files(data)
    duplicated += len(set(files) - {name for name, _ in referenced})
    lost += len({name for name, _ in referenced} - set(files))
    return lost, duplicated, images


def check_results(data: Path, job_id: str, rows: list[tuple[str, ...]], products: int) -> None:
    """The results CSV has each product once, in order, with one output per input URL."""
    csv_rows = results_rows(data, job_id)[1:]
    assert len(csv_rows) == products
    serials = [r[0] for r in csv_rows]
    assert serials == [str(n + 1) for n in range(products)]
    outputs = [cell for r in csv_rows for cell in r[3].split(",")]
    assert len(outputs) == len(rows)
    for output, (_, _, name, _) in zip(outputs, rows, strict=True):
        assert output.endswith(f"/api/image/{name}") if name else output == ""
