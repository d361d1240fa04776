"""A client written for the service imgsvc replaces keeps working: it uploads a `file` with a
`webhook_url`, polls the status, reads the details' flat fields, downloads the results CSV,
fetches an image, and its webhook receiver reads the flat fields of the webhook body."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from imgsvc.api.upload_form import base_name
from imgsvc.db.sqlite.schema import MIGRATIONS

from ..conftest import ImageHost, Receiver, Service, jpeg_bytes, running_service, settings_for

pytestmark = pytest.mark.anyio

# Before csv_filename was stored: the schema of the migrations that came before it.
SCHEMA_WITHOUT_FILENAME = 4


async def old_get(service: Service, path: str) -> Any:
    """A GET as the old client sends it: a fixed path, a JSON answer, no links followed."""
    async with service.client.get(f"{service.url}{path}") as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def old_upload(service: Service, csv_text: str, filename: str, webhook_url: str) -> str:
    form = aiohttp.FormData()
    form.add_field("file", csv_text.encode(), filename=filename, content_type="text/csv")
    form.add_field("webhook_url", webhook_url)
    async with service.client.post(f"{service.url}/api/upload", data=form) as response:
        assert response.status == 202
        request_id: str = (await response.json())["request_id"]
        return request_id


async def details_when(service: Service, request_id: str, processed: int) -> dict[str, Any]:
    """Poll the details, as the old client polls, until `processed` images have ended."""
    async with asyncio.timeout(30):
        while True:
            body: dict[str, Any] = await old_get(service, f"/api/details/{request_id}")
            if body["progress"]["processed_images"] >= processed:
                return body
            await asyncio.sleep(0.05)


async def test_an_old_client_runs_a_job_from_upload_to_webhook(
    service: Service, image_host: ImageHost, receiver: Receiver
) -> None:
    first = image_host.add("/image1.jpg", jpeg_bytes(800, 600))
    second, release = image_host.held("/image2.jpg", jpeg_bytes(640, 480, (20, 120, 200)))
    missing = image_host.url("/image3.jpg")
    # The original README's example: unquoted, the first row's URLs spill into two fields.
    csv_text = f"S. No.,Product Name,Input Image Urls\n1,SKU1,{first},{second}\n2,SKU2,{missing}\n"
    request_id = await old_upload(service, csv_text, "catalogue-2024.csv", receiver.url())

    midway = await details_when(service, request_id, processed=2)
    assert midway["csv_filename"] == "catalogue-2024.csv"
    assert (midway["total_products"], midway["processed_products"]) == (2, 1)
    assert midway["completion_percentage"] == 66.7
    assert [p["status"] for p in midway["products"]] == ["processing", "failed"]

    release.set()
    status = await old_get(service, f"/api/status/{request_id}")
    async with asyncio.timeout(30):
        while status["status"] not in ("completed", "failed"):
            await asyncio.sleep(0.05)
            status = await old_get(service, f"/api/status/{request_id}")
    assert status["status"] == "completed"  # one image failed; the job still completed

    details = await old_get(service, f"/api/details/{request_id}")
    assert (details["total_products"], details["processed_products"]) == (2, 2)
    assert details["completion_percentage"] == 100.0
    assert [p["status"] for p in details["products"]] == ["completed", "failed"]

    async with service.client.get(f"{service.url}/api/download/{request_id}") as response:
        assert response.status == 200
        rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0][-1] == "Output Image Urls"
    outputs = rows[1][-1].split(",")
    assert rows[2][-1] == "", "the missing image leaves its place empty"
    filename = outputs[1].rsplit("/", 1)[1]
    async with service.client.get(f"{service.url}/api/image/{filename}") as response:
        assert response.status == 200
        assert response.content_type == "image/jpeg"
        assert 0 < len(await response.read()) < len(jpeg_bytes(640, 480, (20, 120, 200)))

    (call,) = await receiver.wait_calls(1)
    hook = json.loads(call.body)
    assert hook["request_id"] == request_id
    assert hook["status"] == "completed"
    assert (hook["total_products"], hook["processed_products"]) == (2, 2)
    assert hook["completion_percentage"] == 100.0
    # The new envelope is there beside the old fields, and both say the same.
    assert hook["type"] == "job.completed"
    assert hook["data"]["request_id"] == request_id
    assert hook["data"]["progress"]["percentage"] == hook["completion_percentage"]


async def test_a_product_not_started_is_pending_and_a_cancelled_one_cancelled(
    service: Service, image_host: ImageHost
) -> None:
    held, _release = image_host.held("/held.jpg", jpeg_bytes(200, 100))
    request_id = await old_upload(
        service, f"S. No.,Product Name,Input Image Urls\n1,SKU1,{held}\n", "a.csv", ""
    )
    before = await old_get(service, f"/api/details/{request_id}")
    assert before["products"][0]["status"] in ("pending", "processing")
    assert before["completion_percentage"] == 0.0
    async with service.client.post(f"{service.url}/api/cancel/{request_id}") as response:
        assert response.status == 200
    after = await old_get(service, f"/api/details/{request_id}")
    assert after["status"] == "cancelled"
    assert after["products"][0]["status"] == "cancelled"


async def test_a_raw_csv_body_has_no_file_name(service: Service, image_host: ImageHost) -> None:
    url = image_host.add("/one.jpg", jpeg_bytes(200, 100))
    async with service.client.post(
        f"{service.url}/api/upload",
        data=f"S. No.,Product Name,Input Image Urls\n1,SKU1,{url}\n".encode(),
        headers={"Content-Type": "text/csv"},
    ) as response:
        request_id = (await response.json())["request_id"]
    details = await old_get(service, f"/api/details/{request_id}")
    assert details["csv_filename"] is None


def test_only_the_file_name_is_kept_of_what_the_browser_sends() -> None:
    assert base_name("C:\\fakepath\\products.csv") == "products.csv"
    assert base_name("../../etc/products.csv") == "products.csv"
    assert base_name("new\nline.csv") == "newline.csv"
    assert base_name("") is None


async def test_a_job_stored_before_file_names_were_kept_reads_as_none(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with closing(sqlite3.connect(data_dir / "imgsvc.db")) as db:
        for script in MIGRATIONS[:SCHEMA_WITHOUT_FILENAME]:
            db.executescript(script)
        db.execute(f"PRAGMA user_version = {SCHEMA_WITHOUT_FILENAME}")
        db.execute(
            "INSERT INTO jobs (id, status, message, created_at, updated_at, completed_at, "
            "base_url, quality, format, header, total_products, total_images) VALUES "
            "('old', 'completed', '', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z', "
            "'2025-01-01T00:00:01.000Z', 'http://127.0.0.1', 50, 'jpeg', '[]', 0, 0)"
        )
        db.commit()
    async with running_service(settings_for(data_dir)) as service:
        details = await old_get(service, "/api/details/old")
    assert details["csv_filename"] is None
    assert details["completion_percentage"] == 0.0
