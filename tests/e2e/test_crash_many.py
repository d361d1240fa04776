"""kill -9 of random processes at random moments, three processes on one PostgreSQL database
and one bucket: nothing is lost or produced twice, and every job ends with one webhook.

`make test` runs a few rounds; `make crashtest` runs many (IMGSVC_CRASH_ROUNDS). A failure
prints the seed; IMGSVC_CRASH_SEED replays it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import os
import random
import signal
from collections import defaultdict
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from PIL import Image

from imgsvc.storage import image_name

from ..backends import S3Bucket
from ..conftest import Call, Receiver
from ..replicas import Replicas, postgres_rows, replica_env
from ..served import ENDED, Served, image_files
from .test_crash import SEED, job_csv, slow_host

__all__ = ["slow_host"]  # the image host fixture, shared with the single-process loop

ROUNDS = int(os.environ.get("IMGSVC_CRASH_ROUNDS", "4"))
WEBHOOK_TIMEOUT = 2.0  # seconds; a delivery claimed by a killed process is retaken after
WEBHOOK_LEASE = WEBHOOK_TIMEOUT + 30  # this (the attempt's timeout and the sender's margin)

UNFINISHED = "SELECT id FROM jobs WHERE status NOT IN ('completed', 'failed', 'cancelled')"

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240 + ROUNDS * 20)]


async def upload(running: Served, text: str, webhook_url: str) -> str | None:
    """The job id if the upload was acknowledged; None if the kill came first."""
    try:
        status, body = await running.upload(text, webhook_url=webhook_url)
    except aiohttp.ClientError:
        return None
    assert status == 202, body
    return str(body["request_id"])


async def test_kill_9_of_any_process_loses_nothing_and_sends_one_webhook_per_job(
    tmp_path: Path,
    postgres_url: str,
    s3_bucket: S3Bucket,
    slow_host: TestServer,
    receiver: Receiver,
) -> None:
    rng = random.Random(SEED)
    env = replica_env(postgres_url, s3_bucket, IMGSVC_WEBHOOK_TIMEOUT=str(WEBHOOK_TIMEOUT))
    acknowledged: list[str] = []
    kills_mid_job = 0
    async with Replicas(tmp_path, env) as replicas:
        for round_no in range(ROUNDS):
            # A job is one slice (fewer URLs than SLICE_SIZE), worked on by one process at a
            # time: jobs sent to several processes at once keep them all busy.
            targets = rng.sample(replicas.running, rng.randint(0 if round_no else 1, 3))
            sending = [
                asyncio.create_task(
                    upload(target, job_csv(slow_host, round_no * 3 + n, rng), receiver.url())
                )
                for n, target in enumerate(targets)
            ]
            await asyncio.sleep(rng.uniform(0.05, 2.5))
            kills_mid_job += bool(postgres_rows(postgres_url, UNFINISHED))
            await replicas.kill_and_restart(rng.randrange(replicas.count))
            acknowledged += [job_id for job_id in await asyncio.gather(*sending) if job_id]

        jobs = await wait_all_delivered(postgres_url)
        await check_served_images(replicas.running, postgres_url, rng)
        for running in replicas.running:
            running.signal(signal.SIGTERM)
            assert await running.exit_code() == 0

    lost, duplicated, images = check_accounts(postgres_url, s3_bucket, acknowledged, jobs)
    webhooks_twice = check_webhooks(receiver.calls, jobs)
    print(
        f"\nmany-process crash loop (seed {SEED}): {ROUNDS} kill -9 rounds over 3 processes "
        f"({kills_mid_job} while a job ran), "
        f"{len(jobs)} jobs ({len(acknowledged)} acknowledged), {images} images, lost {lost}, "
        f"duplicated {duplicated}, webhook calls {len(receiver.calls)}, "
        f"webhook messages duplicated {webhooks_twice}"
    )
    assert acknowledged, "no upload was acknowledged before a kill: nothing was checked"
    assert images > 0
    assert (lost, duplicated, webhooks_twice) == (0, 0, 0)
    for number in range(replicas.count):
        folder = replicas.folder(number)
        assert image_files(folder) == [], "an output stayed on one process's disk"
        assert not list((folder / "tmp").glob("*")), "temp files outlived a clean stop"


async def wait_all_delivered(url: str) -> list[str]:
    """Every job once all have ended and every webhook is delivered (a delivery held by a
    killed process waits out its claim first)."""
    async with asyncio.timeout(120 + WEBHOOK_LEASE + ROUNDS * 10):
        while True:
            jobs = postgres_rows(url, "SELECT id, status FROM jobs ORDER BY created_at")
            pending = postgres_rows(
                url, "SELECT COUNT(*) FROM webhook_deliveries WHERE state <> 'delivered'"
            )
            if all(status in ENDED for _, status in jobs) and pending == [(0,)]:
                return [job_id for job_id, _ in jobs]
            await asyncio.sleep(0.2)


async def check_served_images(running: list[Served], url: str, rng: random.Random) -> None:
    """Every recorded output is served whole, by whichever process is asked."""
    rows = postgres_rows(
        url, "SELECT DISTINCT output_name, bytes_out FROM images WHERE status = 'succeeded'"
    )
    for name, size in rows:
        status, body = await rng.choice(running).get(f"/api/image/{name}")
        assert status == 200
        assert len(body) == size
        with Image.open(io.BytesIO(body)) as image:
            image.load()


def check_accounts(
    url: str, bucket: S3Bucket, acknowledged: list[str], jobs: list[str]
) -> tuple[int, int, int]:
    """(images lost, outputs produced twice, images accepted) over every job in the database,
    against every object in the bucket."""
    assert set(acknowledged) <= set(jobs), "an acknowledged job is missing"
    stored = bucket.objects()
    lost = duplicated = images = 0
    for job_id in jobs:
        ((status, message, total, done, ok, failed, products, products_done),) = postgres_rows(
            url, "SELECT status, message, total_images, processed_images, succeeded_images, "
            "failed_images, total_products, processed_products FROM jobs WHERE id = %s", job_id,
        )  # fmt: skip
        assert (status, message) == ("completed", "")
        rows = postgres_rows(
            url, "SELECT url, status, output_name, error_code FROM images "
            "WHERE job_id = %s ORDER BY product_seq, position", job_id,
        )  # fmt: skip
        images += len(rows)
        lost += total - len(rows) + sum(r[1] not in ("succeeded", "failed") for r in rows)
        for image_url, image_status, output, code in rows:
            if "/img/missing" in image_url:
                assert (image_status, output, code) == ("failed", None, "http_error")
            else:
                assert (image_status, output) == ("succeeded", image_name(job_id, image_url, "jpg"))
        assert (done, ok, failed) == (total, sum(r[1] == "succeeded" for r in rows),
                                      sum(r[1] == "failed" for r in rows))  # fmt: skip
        assert products_done == products
        check_results(stored[f"results/{job_id}.csv"], rows, products)
    referenced = postgres_rows(url, "SELECT output_name, COUNT(DISTINCT (job_id, url)) "
                                    "FROM images WHERE output_name IS NOT NULL "
                                    "GROUP BY output_name")  # fmt: skip
    names = {name for name, _ in referenced}
    outputs = {key.removeprefix("images/") for key in stored if key.startswith("images/")}
    duplicated += sum(count - 1 for _, count in referenced)
    duplicated += len(outputs - names)  # stray objects: produced, never recorded
    lost += len(names - outputs)
    assert set(stored) - {f"images/{name}" for name in outputs} == {
        f"results/{job_id}.csv" for job_id in jobs
    }, "an object in the bucket is neither an output nor a results CSV"
    return lost, duplicated, images


def check_results(results: bytes, rows: list[tuple[str, ...]], products: int) -> None:
    """The results CSV has each product once, in order, with one output per input URL."""
    csv_rows = list(csv.reader(io.StringIO(results.decode())))[1:]
    assert [r[0] for r in csv_rows] == [str(n + 1) for n in range(products)]
    outputs = [cell for r in csv_rows for cell in r[3].split(",")]
    assert len(outputs) == len(rows)
    for output, (_, _, name, _) in zip(outputs, rows, strict=True):
        assert output.endswith(f"/api/image/{name}") if name else output == ""


def check_webhooks(calls: list[Call], jobs: list[str]) -> int:
    """Webhook messages beyond one per job: a second `webhook-id` for a job, or a second call
    with one id before the claim of a (killed) sender could have run out."""
    ids: dict[str, set[str]] = defaultdict(set)
    arrivals: dict[str, list[float]] = defaultdict(list)
    for call in calls:
        headers = {name.lower(): value for name, value in call.headers.items()}
        ids[json.loads(call.body)["request_id"]].add(headers["webhook-id"])
        arrivals[headers["webhook-id"]].append(call.arrived)
    assert set(ids) == set(jobs), "a job ended without its webhook"
    twice = sum(len(found) - 1 for found in ids.values())
    for times in arrivals.values():
        twice += sum(
            later - earlier < WEBHOOK_LEASE - 1 for earlier, later in itertools.pairwise(times)
        )
    return twice
