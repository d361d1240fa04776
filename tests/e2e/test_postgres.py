"""End to end on PostgreSQL: the service with IMGSVC_DATABASE_URL set, as a user calls it."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import pytest

from imgsvc.config import Settings
from imgsvc.db import open_database

from ..conftest import ImageHost, jpeg_bytes, running_service, settings_for

pytestmark = pytest.mark.anyio

PASSWORD = "pg-password-never-shown"  # the test server trusts every local connection


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")


async def test_a_job_runs_through_on_postgres(
    tmp_path: Path, postgres_url: str, image_host: ImageHost
) -> None:
    one = image_host.add("/one.jpg", jpeg_bytes(400, 300))
    two = image_host.add("/two.jpg", jpeg_bytes(200, 100))
    missing = image_host.url("/missing.jpg")
    csv_text = (
        f'S. No.,Product Name,Input Image Urls\n1,SKU1,"{one},{missing}"\n2,SKU2,"{two},{one}"\n'
    )
    held, release = image_host.held("/held.jpg", jpeg_bytes(50, 50))
    settings = settings_for(tmp_path / "data", database_url=postgres_url)
    async with running_service(settings) as service:
        status, answer = await service.upload(csv_text)
        assert status == 202
        job = answer["request_id"]
        final = await service.wait(job)
        assert final["status"] == "completed"
        assert (final["progress"]["succeeded_images"], final["progress"]["failed_images"]) == (3, 1)

        _, details = await service.get(f"/api/details/{job}")
        images = [i for p in details["products"] for i in p["images"]]
        assert [i["status"] for i in images] == ["succeeded", "failed", "succeeded", "succeeded"]
        assert images[1]["error"]["code"] == "http_error"
        async with service.client.get(answer["download_url"]) as response:
            rows = list(csv.reader(io.StringIO(await response.text())))
        outputs = [r[3].split(",") for r in rows[1:]]
        assert outputs[0][1] == ""
        assert outputs[0][0] == outputs[1][1]  # one URL, produced once
        status, image = await service.get(outputs[1][0].removeprefix(service.url))
        assert (status, image[:2]) == (200, b"\xff\xd8")

        _, stuck = await service.upload(f"S. No.,Product Name,Input Image Urls\n1,A,{held}\n")
        await service.wait(stuck["request_id"], lambda body: body["status"] == "processing")
        status, body = await service.post(f"/api/cancel/{stuck['request_id']}")
        assert (status, body["status"]) == (200, "cancelled")
        release.set()
        _, listed = await service.get("/api/jobs")
        assert {j["status"] for j in listed["jobs"]} == {"completed", "cancelled"}


async def test_the_database_password_is_never_shown(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings.from_env(
        {"IMGSVC_DATABASE_URL": with_password(postgres_url)},
        data_dir=tmp_path / "data",
    )
    assert settings.database_url == with_password(postgres_url)
    assert PASSWORD not in repr(settings)
    async with running_service(settings) as service:
        ready = await service.call("GET", "/readyz")
        metrics = await service.call("GET", "/metrics")
    assert ready[0] == 200
    assert PASSWORD not in str(ready[1])
    assert PASSWORD.encode() not in metrics[1]
    assert PASSWORD not in caplog.text

    unreachable = with_password(postgres_url).replace("/test_", "/no_such_database_")
    with pytest.raises(Exception) as caught:  # noqa: PT011 (psycopg's own error)
        await open_database(settings.with_(database_url=unreachable))
    assert "no_such_database" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_a_database_url_that_is_not_postgresql_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError, match="IMGSVC_DATABASE_URL must start with") as caught:
        Settings.from_env({"IMGSVC_DATABASE_URL": f"mysql://root:{PASSWORD}@db/imgsvc"})
    assert PASSWORD not in str(caught.value)
