"""Steering jobs on a real `imgsvc serve`: Idempotency-Key, cancel, retry, retention, a full
disk, and fairness between a huge job and a small one."""

from __future__ import annotations

import asyncio
import io
import json
import random
import resource
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from standardwebhooks import Webhook

from ..conftest import SECRET, Receiver
from ..gated import gated_host
from ..served import image_files, query, results_rows, served, service_env

pytestmark = pytest.mark.anyio


async def test_idempotency_key_returns_the_same_job(tmp_path: Path) -> None:
    async with gated_host(open_gate=True) as host, served(tmp_path / "data") as running:
        text = host.csv(3)
        key = {"Idempotency-Key": "order-42"}
        status, first = await running.upload(text, headers=key)
        assert status == 202
        status, again = await running.upload(text, headers=key)
        assert (status, again) == (200, first)
        await running.wait(first["request_id"])
        assert (await running.upload(text, headers=key)) == (200, first)

        status, other = await running.upload(host.csv(4), headers=key)
        assert status == 409
        assert other["code"] == "idempotency_key_reused"
        assert first["request_id"] in other["detail"]

        racing = await asyncio.gather(
            *(running.upload(text, headers={"Idempotency-Key": "burst"}) for _ in range(8))
        )
        assert sorted(s for s, _ in racing) == [200] * 7 + [202]
        assert len({b["request_id"] for _, b in racing}) == 1
        assert (await running.get("/api/jobs"))[1]["total"] == 2

        status, bad = await running.upload(text, headers={"Idempotency-Key": "x" * 300})
        assert (status, bad["code"]) == (400, "invalid_idempotency_key")


async def test_cancel_stops_a_running_job_and_keeps_what_was_produced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = service_env(IMGSVC_FETCH_CONCURRENCY="4", IMGSVC_JOB_WORKERS="1")
    async with gated_host() as host, served(data, env) as running:
        _, running_job = await running.upload(host.csv(30), sizes="40")
        _, queued_job = await running.upload(host.csv(5, prefix="/img/q"))
        await host.until_waiting(4)

        status, body = await running.post(f"/api/cancel/{queued_job['request_id']}")
        assert (status, body["status"]) == (200, "cancelled")
        status, body = await running.post(f"/api/cancel/{running_job['request_id']}")
        assert (status, body["status"]) == (200, "cancelled")
        assert body["progress"]["processed_images"] == 30
        assert "cancelled on request" in body["message"]
        host.gate.set()
        await asyncio.sleep(1)  # the held downloads finish; nothing may come of them

        status, again = await running.post(f"/api/cancel/{running_job['request_id']}")
        assert (status, again["code"]) == (409, "already_ended")
        assert (await running.post("/api/cancel/nope"))[0] == 404
        _, details = await running.get(f"/api/details/{running_job['request_id']}")
        assert {i["status"] for p in details["products"] for i in p["images"]} == {"cancelled"}
        rows = results_rows(data, running_job["request_id"])
        assert len(rows) == 31
        assert all(r[3] == "" for r in rows[1:])
        assert image_files(data) == []  # the held images were written nowhere, nor their sizes
        assert sum(host.hits.values()) == 4


async def test_retry_requeues_only_the_failed_images(tmp_path: Path) -> None:
    async with gated_host() as host, served(tmp_path / "data") as running:
        good, missing = host.url("/img/good.jpg"), host.url("/missing/late.jpg")
        text = f'S. No.,Product Name,Input Image Urls\n1,A,"{good},{missing}"\n'
        _, answer = await running.upload(text)
        job_id = answer["request_id"]
        await host.until_waiting(1)
        status, busy = await running.post(f"/api/retry/{job_id}")
        assert (status, busy["code"]) == (409, "not_finished")
        host.gate.set()
        first = await running.wait(job_id)
        assert first["progress"]["failed_images"] == 1

        host.found.add("/missing/late.jpg")
        status, body = await running.post(f"/api/retry/{job_id}")
        assert (status, body["retried_images"]) == (202, 1)
        final = await running.wait(job_id)
        assert final["status"] == "completed"
        assert final["progress"]["succeeded_images"] == 2
        assert host.hits["/img/good.jpg"] == 1, "a produced image was not fetched again"
        status, body = await running.post(f"/api/retry/{job_id}")
        assert (status, body["code"]) == (409, "nothing_to_retry")


async def test_retention_removes_old_jobs_but_never_a_running_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = service_env(IMGSVC_FETCH_CONCURRENCY="2", IMGSVC_SHUTDOWN_GRACE="0")
    async with gated_host() as host:
        async with served(data, env) as running:
            host.gate.set()
            _, old = await running.upload(host.csv(3, prefix="/img/old"), sizes="40,20")
            _, recent = await running.upload(host.csv(2, prefix="/img/recent"))
            await running.wait(old["request_id"])
            await running.wait(recent["request_id"])
            host.gate.clear()
            _, unfinished = await running.upload(host.csv(3, prefix="/img/slow"))
            await host.until_waiting(2)
            running.signal(signal.SIGTERM)
            assert await running.exit_code() == 0
        old_files = [
            name
            for main, renditions in query(
                data,
                "SELECT output_name, renditions FROM images "
                "WHERE job_number = (SELECT number FROM jobs WHERE id = ?)",
                old["request_id"],
            )
            for name in [main, *(r[1] for r in json.loads(renditions))]
        ]
        assert len(set(old_files) & set(image_files(data))) == 9  # 3 images, 2 sizes each
        age(data, old["request_id"], unfinished["request_id"])

        async with served(data, service_env(IMGSVC_RETENTION_DAYS="1")) as running:
            async with asyncio.timeout(30):
                while (await running.get(f"/api/status/{old['request_id']}"))[0] != 404:
                    await asyncio.sleep(0.1)
            assert (await running.get(f"/api/status/{recent['request_id']}"))[0] == 200
            host.gate.set()
            final = await running.wait(unfinished["request_id"])
            assert final["status"] == "completed"
        assert not set(old_files) & set(image_files(data))
        assert not (data / "results" / f"{old['request_id']}.csv").exists()
        # No image is left without its job.
        assert query(data, "SELECT COUNT(*) FROM images "
                     "WHERE job_number NOT IN (SELECT number FROM jobs)") == [(0,)]  # fmt: skip


def age(data: Path, *job_ids: str) -> None:
    """Make jobs look 10 days old, as a real clock would after 10 days."""
    import sqlite3

    with sqlite3.connect(data / "imgsvc.db") as db:
        for job_id in job_ids:
            db.execute(
                "UPDATE jobs SET created_at = '2000-01-01T00:00:00.000Z', completed_at = "
                "CASE WHEN completed_at IS NULL THEN NULL ELSE '2000-01-01T00:00:00.000Z' END "
                "WHERE id = ?",
                (job_id,),
            )
    db.close()


def file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


async def test_a_full_disk_fails_the_job_with_a_clear_reason(
    tmp_path: Path, receiver: Receiver
) -> None:
    """RLIMIT_FSIZE makes the kernel refuse large writes as a full disk would (EFBIG); the
    job's webhook says `job.failed`, signed."""
    data = tmp_path / "data"
    noise = io.BytesIO()
    Image.frombytes("RGB", (1500, 1500), random.randbytes(1500 * 1500 * 3)).save(
        noise, "PNG", compress_level=0
    )
    async with gated_host(open_gate=True) as host:
        host.body = noise.getvalue()
        limit = file_size_limit(2 * 1024 * 1024)
        env = service_env(IMGSVC_WEBHOOK_SECRET=SECRET)
        async with served(data, env, preexec_fn=limit) as running:
            _, answer = await running.upload(host.csv(3), quality="95", webhook_url=receiver.url())
            final = await running.wait(answer["request_id"])
            assert final["status"] == "failed"
            (call,) = await receiver.wait_calls(1)
            payload = Webhook(SECRET).verify(call.body, call.headers)
            assert (payload["type"], payload["data"]["status"]) == ("job.failed", "failed")
            assert payload["data"]["message"] == final["message"]
            assert "no room for more images" in final["message"]
            assert "File too large" in final["message"]
            assert final["progress"]["processed_images"] == 3  # every image has an outcome
            _, details = await running.get(f"/api/details/{answer['request_id']}")
            errors = [i["error"] for p in details["products"] for i in p["images"]]
            assert {e["code"] for e in errors} == {"storage_error"}
            running.signal(signal.SIGTERM)
            assert await running.exit_code() == 0
        assert not list((data / "tmp").glob("*"))
        async with served(data) as running:  # room again: a retry produces them
            status, _ = await running.post(f"/api/retry/{answer['request_id']}")
            assert status == 202
            final = await running.wait(answer["request_id"])
            assert final["progress"]["succeeded_images"] == 3


@pytest.mark.timeout(600)
async def test_a_huge_job_does_not_starve_a_small_one(tmp_path: Path) -> None:
    """One worker, a job of 100,000 images, then one of 3: the small one finishes first."""
    env = service_env(IMGSVC_JOB_WORKERS="1", IMGSVC_MAX_UPLOAD_BYTES=str(200 * 2**20))
    async with gated_host(open_gate=True) as host, served(tmp_path / "data", env) as running:
        host.body = tiny_jpeg()
        big_csv = host.csv(1000, 100, prefix="/img/h").encode()
        status, huge = await running.post(
            "/api/upload", data=io.BytesIO(big_csv), headers={"Content-Type": "text/csv"}
        )
        assert (status, huge["total_images"]) == (202, 100_000)
        await running.wait(huge["request_id"], lambda s: s["progress"]["processed_images"] > 0)
        _, small = await running.upload(host.csv(3, prefix="/img/s"))
        started = asyncio.get_running_loop().time()
        final = await running.wait(small["request_id"], limit=120)
        took = asyncio.get_running_loop().time() - started
        assert final["progress"]["succeeded_images"] == 3
        _, big = await running.get(f"/api/status/{huge['request_id']}")
        assert big["status"] == "processing"
        assert big["progress"]["processed_images"] < 100_000
        print(f"\nthe 3-image job finished in {took:.1f} s; the huge one had done "
              f"{big['progress']['processed_images']} images")  # fmt: skip
        status, cancelled = await running.post(f"/api/cancel/{huge['request_id']}")
        assert (status, cancelled["status"]) == (200, "cancelled")


def tiny_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(out, "JPEG")
    return out.getvalue()
