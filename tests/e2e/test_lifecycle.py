"""The process's life, on a real `imgsvc serve`: SIGTERM and Ctrl-C, one owner per data
folder, uvicorn --workers, readiness, and many clients at once."""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import sys
from pathlib import Path

import pytest

from ..conftest import free_port
from ..gated import gated_host
from ..served import query, served, service_env

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
async def test_a_signal_drains_then_exits_0_and_a_restart_continues(
    tmp_path: Path, sig: signal.Signals
) -> None:
    data = tmp_path / "data"
    env = service_env(IMGSVC_FETCH_CONCURRENCY="4", IMGSVC_SHUTDOWN_GRACE="30")
    async with gated_host() as host:
        async with served(data, env) as running:
            status, answer = await running.upload(host.csv(40))
            assert status == 202
            job_id = answer["request_id"]
            await host.until_waiting(4)  # four images in flight, held by the host

            running.signal(sig)
            await asyncio.sleep(0.5)
            status, ready = await running.get("/readyz")
            assert status == 503
            assert ready["checks"]["service"] == "shutting down"
            status, refused = await running.upload(host.csv(1))
            assert status == 503
            assert refused["code"] == "shutting_down"
            assert "shutting down" in refused["detail"]
            status, body = await running.get(f"/api/status/{job_id}")
            assert (status, body["status"]) == (200, "processing")

            host.gate.set()  # the images in flight finish within the grace period
            assert await running.exit_code() == 0
        assert sum(host.hits.values()) == 4, "nothing new was started after the signal"
        ((job_status, done),) = query(
            data, "SELECT status, succeeded_images FROM jobs WHERE id = ?", job_id
        )
        assert (job_status, done) == ("pending", 4)
        assert not list((data / "tmp").glob("*"))

        async with served(data, env) as running:
            final = await running.wait(job_id)
            assert final["progress"]["succeeded_images"] == 40
            running.signal(signal.SIGTERM)
            assert await running.exit_code() == 0
        assert sum(host.hits.values()) == 40, "the four finished images were not redone"


async def test_images_past_the_grace_period_are_put_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = service_env(IMGSVC_FETCH_CONCURRENCY="4", IMGSVC_SHUTDOWN_GRACE="1")
    async with gated_host() as host:
        async with served(data, env) as running:
            _, answer = await running.upload(host.csv(10))
            await host.until_waiting(4)
            running.signal(signal.SIGTERM)
            assert await running.exit_code() == 0  # without the gate ever opening
        ((job_status, processed),) = query(
            data, "SELECT status, processed_images FROM jobs WHERE id = ?", answer["request_id"]
        )
        assert (job_status, processed) == ("pending", 0)
        host.gate.set()
        async with served(data, env) as running:
            final = await running.wait(answer["request_id"])
            assert final["status"] == "completed"
            assert final["progress"]["succeeded_images"] == 10


async def test_a_second_serve_on_the_same_folder_exits_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with gated_host(open_gate=True) as host, served(data) as first:
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "imgsvc", "serve", "--port", "0", "--data-dir", str(data),
            env=service_env(), stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(30):
            _, err = await second.communicate()
        assert second.returncode == 1
        message = err.decode()
        assert f"in use by another imgsvc process (pid {first.process.pid})" in message
        assert "Traceback" not in message
        _, answer = await first.upload(host.csv(3))  # the owner is unharmed
        assert (await first.wait(answer["request_id"]))["status"] == "completed"


async def test_uvicorn_workers_cannot_share_a_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "--factory", "imgsvc.app:create_app",
        "--workers", "2", "--port", str(port),
        env=service_env(IMGSVC_DATA_DIR=str(data)), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):  # the worker that finds the folder taken fails its start,
        _, err = await process.communicate()  # and uvicorn then stops the whole group
    assert "do not run it with uvicorn --workers" in err.decode()
    assert query(data, "PRAGMA integrity_check") == [("ok",)]
    async with served(data) as running:  # the folder is free again and whole
        assert (await running.get("/readyz"))[0] == 200


async def test_readyz_is_503_while_storage_is_not_writable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with served(data) as running:
        assert (await running.get("/readyz"))[0] == 200
        shutil.rmtree(data / "tmp")
        (data / "tmp").write_text("a file where the temp folder should be")
        status, body = await running.get("/readyz")
        assert status == 503
        assert body["checks"]["storage"] == "not writable"
        (data / "tmp").unlink()
        (data / "tmp").mkdir()
        assert (await running.get("/readyz"))[0] == 200
        assert (await running.get("/livez"))[0] == 200


async def test_twenty_uploads_and_fifty_pollers_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with gated_host(open_gate=True) as host, served(data) as running:
        ids: list[str] = []
        statuses: list[int] = []
        uploads_done = asyncio.Event()

        async def upload(n: int) -> None:
            status, body = await running.upload(host.csv(15, 2, prefix=f"/img/u{n}-"))
            statuses.append(status)
            assert status == 202, body
            ids.append(body["request_id"])

        async def poll() -> None:
            while not (uploads_done.is_set() and await all_completed()):
                path = random.choice([f"/api/status/{i}" for i in ids] or ["/api/jobs"])
                status, _ = await running.get(path)
                statuses.append(status)
                await asyncio.sleep(0.01)

        async def all_completed() -> bool:
            status, body = await running.get("/api/jobs?limit=100")
            statuses.append(status)
            return all(j["status"] == "completed" for j in body["jobs"])

        async with asyncio.timeout(120):
            pollers = [asyncio.create_task(poll()) for _ in range(50)]
            await asyncio.gather(*(upload(n) for n in range(20)))
            uploads_done.set()
            await asyncio.gather(*pollers)
        assert len(ids) == 20
        assert not [s for s in statuses if s >= 500]
        assert "database is locked" not in running.log_text
        for job_id in ids:
            _, body = await running.get(f"/api/status/{job_id}")
            assert body["progress"]["succeeded_images"] == 30


def test_settings_refuse_a_negative_grace() -> None:
    from imgsvc.config import Settings, SettingsError

    with pytest.raises(SettingsError, match="IMGSVC_SHUTDOWN_GRACE"):
        Settings.from_env({"IMGSVC_SHUTDOWN_GRACE": "-1"})
