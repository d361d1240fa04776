"""The whole service with its outputs in a bucket (IMGSVC_STORAGE_URL=s3://…) on the local S3
API: a job's images and results CSV are served from the bucket, none lands in the data
folder, and the secret key never shows."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imgsvc.config import Settings

from ..backends import S3Bucket
from ..conftest import ImageHost, Service, jpeg_bytes, running_service, settings_for

pytestmark = pytest.mark.anyio

PREFIX = "shop/outputs"


@pytest.fixture
async def service(
    tmp_path: Path, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Service]:
    async with running_service(bucket_settings(tmp_path, s3_bucket, monkeypatch)) as running:
        yield running


def bucket_settings(
    tmp_path: Path, bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch, name: str | None = None
) -> Settings:
    """Settings that keep outputs in `name` (by default the test's bucket), under PREFIX;
    the credentials are in the environment, where an operator puts them."""
    for variable, value in bucket.environ().items():
        if variable.startswith("AWS_"):
            monkeypatch.setenv(variable, value)
    url = f"s3://{name or bucket.name}/{PREFIX}"
    return settings_for(tmp_path / "data", storage_url=url, s3_endpoint=bucket.server.endpoint)


def outputs(bucket: S3Bucket) -> dict[str, bytes]:
    """The output images in the bucket, by name."""
    found = bucket.objects().items()
    return {k.rsplit("/", 1)[1]: v for k, v in found if k.startswith(f"{PREFIX}/images/")}


def csv_of(*urls: str) -> str:
    rows = "".join(f"{n},SKU{n},{url}\n" for n, url in enumerate(urls, 1))
    return "S. No.,Product Name,Input Image Urls\n" + rows


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


async def test_a_job_is_stored_in_and_served_from_the_bucket(
    service: Service, image_host: ImageHost, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    urls = [image_host.add(f"/{n}.jpg", jpeg_bytes(300 + n, 200)) for n in range(3)]
    status, answer = await service.upload(csv_of(*urls))
    assert status == 202
    job_id = answer["request_id"]
    final = await service.wait(job_id)
    assert (final["status"], final["progress"]["succeeded_images"]) == ("completed", 3)

    stored = s3_bucket.objects()
    images = outputs(s3_bucket)
    assert len(images) == 3
    results = f"{PREFIX}/results/{job_id}.csv"
    assert set(stored) == {f"{PREFIX}/images/{n}" for n in images} | {results}

    status, text = await service.get(f"/api/download/{job_id}")
    assert status == 200
    assert text == stored[results]
    served = [row[3] for row in csv.reader(io.StringIO(text.decode()))][1:]
    assert sorted(url.rsplit("/", 1)[1] for url in served) == sorted(images)

    for url in served:
        name = url.rsplit("/", 1)[1]
        async with service.client.get(url) as response:
            assert response.status == 200
            assert await response.read() == images[name]
            etag = response.headers["ETag"]
            assert etag == f'"{name.removesuffix(".jpg")}"'
            assert "immutable" in response.headers["Cache-Control"]
        async with service.client.get(url, headers={"If-None-Match": etag}) as response:
            assert (response.status, await response.read()) == (304, b"")
        async with service.client.head(url) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(len(images[name]))

    status, archive = await service.get(f"/api/archive/{job_id}")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(archive)) as unpacked:
        members = unpacked.namelist()
        assert members[0] == f"results-{job_id}.csv"
        assert len([m for m in members if m.startswith("images/")]) == 3
        assert sorted(unpacked.read(m) for m in members[1:]) == sorted(images.values())

    data = tmp_path / "data"
    assert files_in(data / "images") == files_in(data / "results") == files_in(data / "tmp") == []
    assert (await service.get("/readyz"))[1]["checks"]["storage"] == "ok"


async def test_a_rerun_copies_unchanged_outputs_inside_the_bucket(
    service: Service, image_host: ImageHost, s3_bucket: S3Bucket
) -> None:
    urls = [image_host.add(f"/{n}.jpg", jpeg_bytes(300 + n, 200)) for n in range(2)]
    jobs = []
    for _ in range(2):
        _, answer = await service.upload(csv_of(*urls))
        jobs.append(await service.wait(answer["request_id"]))
    assert [j["progress"]["reused_images"] for j in jobs] == [0, 2]
    # The same bytes (the test host gives no validators), under each job's own names.
    images = outputs(s3_bucket)
    assert len(images) == 4
    assert len(set(images.values())) == 2
    _, details = await service.get(f"/api/details/{jobs[1]['request_id']}")
    for product in details["products"]:
        async with service.client.get(product["output_image_urls"][0]) as response:
            assert response.status == 200
            assert await response.read() == images[response.url.name]


async def test_a_cancel_leaves_only_recorded_images_in_the_bucket(
    service: Service, image_host: ImageHost, s3_bucket: S3Bucket
) -> None:
    done = image_host.add("/done.jpg", jpeg_bytes(200, 100))
    held, release = image_host.held("/held.jpg", jpeg_bytes(60, 40))
    try:
        _, answer = await service.upload(csv_of(done, held))
        job_id = answer["request_id"]
        await service.wait(job_id, lambda s: s["progress"]["succeeded_images"] == 1)
        status, cancelled = await service.post(f"/api/cancel/{job_id}")
        assert (status, cancelled["status"]) == (200, "cancelled")
    finally:
        release.set()
    await asyncio.sleep(0.5)  # the held image arrives; nothing may come of it

    images = outputs(s3_bucket)
    assert len(images) == 1
    status, text = await service.get(f"/api/download/{job_id}")
    assert status == 200
    rows = list(csv.reader(io.StringIO(text.decode())))
    assert rows[1][3].rsplit("/", 1)[1] in images
    assert rows[2][3] == ""
    _, details = await service.get(f"/api/details/{job_id}")
    assert details["products"][1]["images"][0]["status"] == "cancelled"


async def test_the_secret_key_never_shows_even_when_the_bucket_fails(
    tmp_path: Path,
    image_host: ImageHost,
    s3_bucket: S3Bucket,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = s3_bucket.server.secret_access_key
    settings = bucket_settings(tmp_path, s3_bucket, monkeypatch, name="no-such-bucket")
    assert secret not in repr(Settings.from_env({"AWS_SECRET_ACCESS_KEY": secret}))
    async with running_service(settings) as service:
        status, ready = await service.get("/readyz")
        assert (status, ready["checks"]["storage"]) == (503, "not writable")
        _, answer = await service.upload(csv_of(image_host.add("/a.jpg", jpeg_bytes(80, 60))))
        # The job cannot even record its failure (its results CSV is refused too): it is
        # given back, to go on once the bucket takes writes again.
        async with asyncio.timeout(30):
            while "could not record its failure" not in caplog.text:
                await asyncio.sleep(0.05)
        _, state = await service.get(f"/api/status/{answer['request_id']}")
        _, details = await service.get(f"/api/details/{answer['request_id']}")
        _, metrics = await service.get("/metrics")
    assert state["status"] in ("pending", "processing")
    # The reason is told, with the bucket and the key; the secret key is not.
    assert f"the bucket did not store results/{answer['request_id']}.csv" in caplog.text
    assert "no-such-bucket" in caplog.text
    shown = [repr(settings), str(ready), str(state), str(details), metrics.decode(), caplog.text]
    assert not [text for text in shown if secret in text]
