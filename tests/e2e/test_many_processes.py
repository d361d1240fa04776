"""Several `imgsvc serve` processes on one PostgreSQL database (and one bucket) share the work:
every process answers for every job, a process killed (kill -9) has its work taken over, and
a cancel sent to one stops the work on all."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgsvc.db.slices import SLICE_SIZE

from ..backends import S3Bucket
from ..conftest import ImageHost, jpeg_bytes
from ..gated import gated_host
from ..replicas import Replicas, replica_env
from ..served import Served, image_files, kill_9, served, service_env

pytestmark = pytest.mark.anyio

OUTPUT_URL = re.compile(r"http://127\.0\.0\.1:\d+/api/image/[A-Za-z0-9_-]{22}\.jpg")


async def test_two_processes_share_jobs_and_one_killed_is_taken_over(
    tmp_path: Path, postgres_url: str
) -> None:
    env = service_env(
        IMGSVC_DATABASE_URL=postgres_url,
        IMGSVC_JOB_WORKERS="1",  # one slice at a time: a second job needs the other process
        IMGSVC_FETCH_CONCURRENCY="2",
        IMGSVC_LEASE_SECONDS="2",
    )
    async with (
        gated_host() as host,
        served(tmp_path / "a", env) as first,
        served(tmp_path / "b", env) as second,
    ):
        _, one = await first.upload(host.csv(3, prefix="/img/one"))
        _, two = await first.upload(host.csv(3, prefix="/img/two"))
        # Two downloads in flight is all one process may have: both are working.
        await host.until_waiting(4)
        for job in (one, two):
            _, seen = await second.get(f"/api/status/{job['request_id']}")
            assert seen["status"] == "processing"

        kill_9(first)
        await first.exit_code()
        host.gate.set()

        for job in (one, two):
            final = await second.wait(job["request_id"], limit=60)
            assert final["status"] == "completed"
            assert final["progress"]["succeeded_images"] == 3
            status, _ = await second.get(f"/api/download/{job['request_id']}")
            assert status == 200
        # Nothing was produced before the kill: every image is the survivor's, made once.
        assert image_files(tmp_path / "a") == []
        assert len(image_files(tmp_path / "b")) == 6


def varied_csv(host: ImageHost) -> str:
    """Nine products: images of eight sizes, each used twice, and one URL that is missing."""
    urls = [host.add(f"/{n}.jpg", jpeg_bytes(120 + 40 * n, 90 + 25 * n)) for n in range(8)]
    rows = [f'{n + 1},SKU{n + 1},"{urls[n]},{urls[(n + 3) % 8]}"' for n in range(8)]
    rows.append(f'9,SKU9,"{host.url("/missing.jpg")},{urls[0]}"')
    return "S. No.,Product Name,Input Image Urls\n" + "\n".join(rows) + "\n"


async def read_events(running: Served, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The server-sent events of a job until the stream ends: (name, data) pairs."""
    events = []
    name = ""
    async with running.client.get(f"{running.url}/api/events/{job_id}") as response:
        assert response.status == 200
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


async def outputs_by_url(running: Served, job_id: str) -> dict[str, tuple[int, int] | None]:
    """Per input URL, the pixel size of its output as the process serves it (None: failed).
    Every output cell of the results CSV must be a URL of /api/image (or empty)."""
    status, text = await running.get(f"/api/download/{job_id}")
    assert status == 200
    sizes: dict[str, tuple[int, int] | None] = {}
    for row in list(csv.reader(io.StringIO(text.decode())))[1:]:
        for url, output in zip(row[2].split(","), row[3].split(","), strict=True):
            if not output:
                sizes[url] = None
                continue
            assert OUTPUT_URL.fullmatch(output), output
            status, image = await running.get("/api/image/" + output.rsplit("/", 1)[1])
            assert status == 200
            with Image.open(io.BytesIO(image)) as decoded:
                sizes[url] = decoded.size
    return sizes


def columns(results: bytes) -> list[list[str]]:
    """The results CSV without its output cells (those name the job)."""
    return [row[:3] for row in csv.reader(io.StringIO(results.decode()))]


def archive_contents(archive: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(archive)) as unpacked:
        return {name: unpacked.read(name) for name in unpacked.namelist()}


async def test_three_processes_answer_for_one_job_as_one_process_would(
    tmp_path: Path, postgres_url: str, s3_bucket: S3Bucket, image_host: ImageHost
) -> None:
    text = varied_csv(image_host)
    async with served(tmp_path / "single") as single:
        _, alone = await single.upload(text)
        assert (await single.wait(alone["request_id"]))["status"] == "completed"
        expected_sizes = await outputs_by_url(single, alone["request_id"])
        _, expected_results = await single.get(f"/api/download/{alone['request_id']}")

    env = replica_env(postgres_url, s3_bucket)
    async with Replicas(tmp_path, env) as replicas:
        a, b, c = replicas.running
        status, answer = await a.upload(text)
        assert status == 202
        job_id = answer["request_id"]
        streamed = asyncio.create_task(read_events(c, job_id))
        polled = await b.wait(job_id, limit=60)
        events = await asyncio.wait_for(streamed, 30)

        assert polled["status"] == "completed"
        assert (polled["progress"]["succeeded_images"], polled["progress"]["failed_images"]) == (
            17,
            1,
        )
        assert events[-1][0] == "done"
        assert {name for name, _ in events[:-1]} == {"progress"}
        assert events[-1][1]["status"] == "completed"

        answers = []
        for running in replicas.running:
            _, details = await running.get(f"/api/details/{job_id}")
            status, results = await running.get(f"/api/download/{job_id}")
            assert status == 200
            status, archive = await running.get(f"/api/archive/{job_id}")
            assert status == 200
            sizes = await outputs_by_url(running, job_id)
            answers.append((details, results, archive_contents(archive), sizes))
        assert answers[1:] == [answers[0]] * 2, "every process answers the same"

        details, results, archive, sizes = answers[0]
        assert columns(results) == columns(expected_results)
        assert sizes == expected_sizes
        # The zip's CSV is the results CSV with where each image is in the zip.
        zipped = list(csv.reader(io.StringIO(archive[f"results-{job_id}.csv"].decode())))
        downloaded = list(csv.reader(io.StringIO(results.decode())))
        assert [row[:-1] for row in zipped] == downloaded
        assert {f for row in zipped[1:] for f in row[-1].split(",") if f} <= set(archive)
        assert len([name for name in archive if name.startswith("images/")]) == 8
        # Outputs live in the bucket alone: no process keeps one on its own disk.
        assert all(image_files(replicas.folder(n)) == [] for n in range(3))
        stored = s3_bucket.objects()
        assert len([key for key in stored if key.startswith("images/")]) == 8
        assert stored[f"results/{job_id}.csv"] == results


async def test_a_cancel_sent_to_one_process_stops_the_work_on_all(
    tmp_path: Path, postgres_url: str, s3_bucket: S3Bucket
) -> None:
    env = replica_env(postgres_url, s3_bucket, IMGSVC_JOB_WORKERS="1", IMGSVC_FETCH_CONCURRENCY="2")
    async with gated_host() as host, Replicas(tmp_path, env) as replicas:
        a = replicas.running[0]
        _, job = await a.upload(host.csv(3 * SLICE_SIZE))  # three slices, one per process
        # One slice at a time and two downloads each: six held means all three are working.
        await host.until_waiting(6)

        status, body = await a.post(f"/api/cancel/{job['request_id']}")
        cancelled_at = time.monotonic()
        assert status == 200, body
        host.gate.set()  # the held downloads end; a process still working would start more
        await asyncio.sleep(4)

        after = [round(t - cancelled_at, 3) for t in host.arrivals if t > cancelled_at]
        print(f"\ndownloads started after the cancel, in seconds: {after}")
        assert [t for t in after if t > 1.5] == [], "work went on after the cancel"
        finals = [await running.wait(job["request_id"], limit=10) for running in replicas.running]
        assert finals[1:] == [finals[0]] * 2
        assert finals[0]["status"] == "cancelled"
        assert finals[0]["progress"]["succeeded_images"] <= len(host.arrivals) < 100
