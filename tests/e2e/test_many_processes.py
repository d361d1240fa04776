"""Two `imgsvc serve` processes on one PostgreSQL database share the work; when one is
killed (kill -9), the other takes over what it held once the leases run out."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..gated import gated_host
from ..served import image_files, kill_9, served, service_env

pytestmark = pytest.mark.anyio


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
