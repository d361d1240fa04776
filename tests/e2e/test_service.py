"""End to end: uvicorn on a free port, an aiohttp image host, the API as a user calls it."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from ..conftest import ImageHost, Service, jpeg_bytes, running_service, settings_for

pytestmark = pytest.mark.anyio


def readme_example(host: ImageHost) -> str:
    """The original README's example, unquoted, pointed at the local image host."""
    one = host.add("/image1.jpg", jpeg_bytes(800, 600))
    two = host.add("/image2.jpg", jpeg_bytes(640, 480, (20, 120, 200)))
    three = host.add("/image3.jpg", jpeg_bytes(300, 200, (30, 160, 60)))
    return f"S. No.,Product Name,Input Image Urls\n1,SKU1,{one},{two}\n2,SKU2,{three}\n"


async def test_readme_example_end_to_end(service: Service, image_host: ImageHost) -> None:
    status, answer = await service.upload(readme_example(image_host))
    assert status == 202
    assert answer["status"] == "pending"
    assert answer["message"] == "accepted 2 products, 3 images"
    assert (answer["total_products"], answer["total_images"]) == (2, 3)
    assert answer["status_url"] == f"{service.url}/api/status/{answer['request_id']}"
    assert len(answer["request_id"]) == 32

    final = await service.wait(answer["request_id"])
    assert final["status"] == "completed"
    assert final["progress"] == {
        "total_products": 2,
        "processed_products": 2,
        "total_images": 3,
        "processed_images": 3,
        "succeeded_images": 3,
        "failed_images": 0,
        "reused_images": 0,
        "percentage": 100.0,
    }
    assert final["completed_at"] is not None

    async with service.client.get(answer["download_url"]) as response:
        assert response.status == 200
        assert response.content_type == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        text = await response.text()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["S. No.", "Product Name", "Input Image Urls", "Output Image Urls"]
    assert [r[:2] for r in rows[1:]] == [["1", "SKU1"], ["2", "SKU2"]]
    outputs = [r[3].split(",") for r in rows[1:]]
    assert [len(o) for o in outputs] == [2, 1]

    sizes = [(800, 600), (640, 480), (300, 200)]
    for url, size in zip([*outputs[0], *outputs[1]], sizes, strict=True):
        assert url.startswith(f"{service.url}/api/image/")
        async with service.client.get(url) as response:
            assert response.status == 200
            assert response.content_type == "image/jpeg"
            image = Image.open(io.BytesIO(await response.read()))
            assert image.format == "JPEG"
            assert image.size == size


async def test_details_show_each_image(service: Service, image_host: ImageHost) -> None:
    ok = image_host.add("/ok.jpg", jpeg_bytes(400, 300))
    missing = image_host.url("/missing.jpg")
    csv_text = f'S. No.,Product Name,Input Image Urls\n7,Chair,"{ok}, {missing}"\n'
    _, answer = await service.upload(csv_text)
    final = await service.wait(answer["request_id"])
    assert final["status"] == "completed"
    assert final["progress"]["failed_images"] == 1

    status, details = await service.get(f"/api/details/{answer['request_id']}")
    assert status == 200
    [product] = details["products"]
    assert product["serial_number"] == "7"
    assert product["input_image_urls"] == [ok, missing]
    good, bad = product["images"]
    assert good["status"] == "succeeded"
    assert (good["width"], good["height"]) == (400, 300)
    assert 0 < good["bytes_out"] < good["bytes_in"]
    assert bad["status"] == "failed"
    assert bad["output_url"] is None
    assert bad["error"]["code"] == "http_error"
    assert "404" in bad["error"]["message"]
    assert product["output_image_urls"] == [good["output_url"], None]

    _, body = await service.get(answer["download_url"].removeprefix(service.url))
    row = list(csv.reader(io.StringIO(body.decode())))[1]
    assert row[3] == good["output_url"] + ","


async def test_a_url_repeated_in_a_job_is_fetched_once(
    service: Service, image_host: ImageHost
) -> None:
    url = image_host.add("/shared.jpg", jpeg_bytes(200, 200))
    lines = [f"{n},P{n},{url}" for n in range(1, 21)]
    _, answer = await service.upload("S No,Product Name,Input Image Urls\n" + "\n".join(lines))
    final = await service.wait(answer["request_id"])
    assert final["progress"]["succeeded_images"] == 20
    assert final["progress"]["processed_products"] == 20
    assert image_host.hits["/shared.jpg"] == 1


async def test_no_image_produced_means_failed(service: Service, image_host: ImageHost) -> None:
    html = image_host.add("/page.jpg", b"<html><body>not an image</body></html>", "image/jpeg")
    _, answer = await service.upload(f"S. No.,Product Name,Input Image Urls\n1,A,{html}\n")
    final = await service.wait(answer["request_id"])
    assert final["status"] == "failed"
    assert final["message"] == "no image could be produced"
    _, body = await service.get(f"/api/details/{answer['request_id']}")
    assert body["products"][0]["images"][0]["error"]["code"] == "not_an_image"


async def test_options_are_applied(service: Service, image_host: ImageHost) -> None:
    url = image_host.add("/big.jpg", jpeg_bytes(1200, 800))
    csv_text = f"S. No.,Product Name,Input Image Urls\n1,A,{url}\n"
    _, answer = await service.upload(csv_text, quality="80", max_dimension="300", format="webp")
    await service.wait(answer["request_id"])
    _, details = await service.get(f"/api/details/{answer['request_id']}")
    assert details["options"] == {
        "quality": 80, "max_dimension": 300, "format": "webp", "progressive": False, "sizes": [],
        "reuse": True,
    }  # fmt: skip
    output = details["products"][0]["images"][0]["output_url"]
    assert output.endswith(".webp")
    async with service.client.get(output) as response:
        assert response.content_type == "image/webp"
        image = Image.open(io.BytesIO(await response.read()))
    assert (image.format, image.size) == ("WEBP", (300, 200))


async def test_raw_csv_body_with_query_options(service: Service, image_host: ImageHost) -> None:
    url = image_host.add("/a.jpg", jpeg_bytes(100, 100))
    async with service.client.post(
        f"{service.url}/api/upload?quality=30",
        data=f"S. No.,Product Name,Input Image Urls\n1,A,{url}\n".encode(),
        headers={"Content-Type": "text/csv"},
    ) as response:
        assert response.status == 202
        answer = await response.json()
    assert (await service.wait(answer["request_id"]))["status"] == "completed"


async def test_invalid_csv_lists_every_problem(service: Service) -> None:
    csv_text = "S. No.,Product Name,Input Image Urls\n1,,http://a.example/x.jpg\n2,B,ftp://x\n"
    status, body = await service.upload(csv_text)
    assert status == 400
    assert body["code"] == "invalid_csv"
    assert body["detail"]
    assert [(e["line"], e["column"]) for e in body["errors"]] == [
        (2, "Product Name"),
        (3, "Input Image Urls"),
    ]


async def test_a_problem_far_into_a_large_csv_leaves_nothing_behind(service: Service) -> None:
    """The products are stored as the file is read: a problem found past many stored
    batches still answers 400 with its line, and no job is left."""
    rows = [f"{n},SKU{n}," + " ".join(f"http://a.example/{n}/{k}.jpg" for k in range(50))
            for n in range(1, 2001)]  # fmt: skip
    rows[1500] = "1501,,http://a.example/x.jpg"
    data = ("S. No.,Product Name,Input Image Urls\n" + "\n".join(rows)).encode()
    status, body = await service.post(
        "/api/upload", data=io.BytesIO(data), headers={"Content-Type": "text/csv"}
    )
    assert (status, body["code"]) == (400, "invalid_csv")
    assert [(e["line"], e["column"]) for e in body["errors"]] == [(1502, "Product Name")]
    assert (await service.get("/api/jobs"))[1]["total"] == 0


async def test_bad_options_name_the_field(service: Service) -> None:
    csv_text = "S. No.,Product Name,Input Image Urls\n1,A,http://a.example/x.jpg\n"
    for field, value in (("quality", "0"), ("quality", "abc"), ("format", "gif"),
                         ("max_dimension", "-3"), ("webhook_url", "not a url")):  # fmt: skip
        status, body = await service.upload(csv_text, **{field: value})
        assert status == 400, (field, value)
        assert body["code"] == "invalid_field"
        assert body["detail"].startswith(field)


async def test_upload_refusals(service: Service) -> None:
    async with service.client.post(f"{service.url}/api/upload", data=b"{}") as response:
        assert response.status == 415
        assert (await response.json())["code"] == "unsupported_media_type"
    form_without_file = aiohttp.FormData({"quality": "50"}, default_to_multipart=True)
    async with service.client.post(f"{service.url}/api/upload", data=form_without_file) as response:
        assert response.status == 400
        assert (await response.json())["code"] == "missing_file"


async def test_upload_over_the_limit_is_413(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, max_upload_bytes=1000)
    async with running_service(settings) as service:
        body = "S. No.,Product Name,Input Image Urls\n" + "1,A,http://a.example/x.jpg\n" * 100
        status, answer = await service.upload(body)
        assert status == 413
        assert answer["code"] == "too_large"
        assert "1,000 bytes" in answer["detail"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(100):
                yield b"1,A,http://a.example/x.jpg\n"

        async with service.client.post(
            f"{service.url}/api/upload", data=chunks(), headers={"Content-Type": "text/csv"}
        ) as response:
            assert response.status == 413


async def test_unknown_ids_and_paths_are_404_in_the_error_shape(service: Service) -> None:
    for path in ("/api/status/nope", "/api/details/nope", "/api/download/nope",
                 "/api/image/nope.jpg", "/api/image/..%2Fimgsvc.db", "/nowhere"):  # fmt: skip
        status, body = await service.get(path)
        assert status == 404, path
        assert body["code"] == "not_found"
        assert isinstance(body["detail"], str)


async def test_download_is_409_while_running(service: Service, image_host: ImageHost) -> None:
    url, release = image_host.held("/slow.jpg", jpeg_bytes(50, 50))
    _, answer = await service.upload(f"S. No.,Product Name,Input Image Urls\n1,A,{url}\n")
    status, body = await service.get(f"/api/download/{answer['request_id']}")
    assert status == 409
    assert body["code"] == "not_finished"
    release.set()
    await service.wait(answer["request_id"])
    status, _ = await service.get(f"/api/download/{answer['request_id']}")
    assert status == 200


async def test_images_in_flight_show_as_processing(service: Service, image_host: ImageHost) -> None:
    url, release = image_host.held("/held.jpg", jpeg_bytes(40, 40))
    _, answer = await service.upload(f"S. No.,Product Name,Input Image Urls\n1,A,{url}\n")
    path = f"/api/details/{answer['request_id']}"
    async with asyncio.timeout(10):
        while (await service.get(path))[1]["products"][0]["images"][0]["status"] != "processing":
            await asyncio.sleep(0.05)
    release.set()
    await service.wait(answer["request_id"])
    _, details = await service.get(path)
    assert details["products"][0]["images"][0]["status"] == "succeeded"


async def test_image_caching_headers(service: Service, image_host: ImageHost) -> None:
    url = image_host.add("/c.jpg", jpeg_bytes(64, 64))
    _, answer = await service.upload(f"S. No.,Product Name,Input Image Urls\n1,A,{url}\n")
    await service.wait(answer["request_id"])
    _, details = await service.get(f"/api/details/{answer['request_id']}")
    output = details["products"][0]["images"][0]["output_url"]
    async with service.client.get(output) as response:
        etag = response.headers["ETag"]
        assert "immutable" in response.headers["Cache-Control"]
    async with service.client.get(output, headers={"If-None-Match": etag}) as response:
        assert response.status == 304
    async with service.client.head(output) as response:
        assert response.status == 200
        assert int(response.headers["Content-Length"]) > 0


async def test_jobs_are_listed_newest_first(service: Service, image_host: ImageHost) -> None:
    url = image_host.add("/j.jpg", jpeg_bytes(32, 32))
    ids = []
    for n in range(3):
        _, answer = await service.upload(f"S. No.,Product Name,Input Image Urls\n{n},A,{url}\n")
        ids.append(answer["request_id"])
    status, body = await service.get("/api/jobs?limit=2")
    assert status == 200
    assert body["total"] == 3
    assert [j["request_id"] for j in body["jobs"]] == ids[::-1][:2]
    _, body = await service.get("/api/jobs?limit=2&offset=2")
    assert [j["request_id"] for j in body["jobs"]] == ids[:1]
    for query in ("limit=0", "limit=501", "offset=-1", "limit=two"):
        status, body = await service.get(f"/api/jobs?{query}")
        assert (status, body["code"]) == (400, "invalid_field"), query
        assert body["detail"].startswith(query.split("=")[0] + ": ")


async def test_health_endpoints(service: Service) -> None:
    assert await service.get("/livez") == (200, {"status": "ok"})
    status, body = await service.get("/readyz")
    assert status == 200
    assert body["checks"] == {"database": "ok", "storage": "ok", "workers": "ok", "service": "ok"}


async def test_a_restart_resumes_without_redoing_work(
    tmp_path: Path, image_host: ImageHost
) -> None:
    fast = [image_host.add(f"/fast{n}.jpg", jpeg_bytes(80, 60)) for n in range(5)]
    slow, gate = image_host.held("/held.jpg", jpeg_bytes(80, 60))
    lines = [f"{n},P{n},{u}" for n, u in enumerate(fast)] + [f"9,Held,{slow}"]
    settings = settings_for(tmp_path)
    async with running_service(settings) as service:
        _, answer = await service.upload(
            "S. No.,Product Name,Input Image Urls\n" + "\n".join(lines)
        )
        await service.wait(answer["request_id"], lambda b: b["progress"]["processed_images"] == 5)
    gate.set()
    async with running_service(settings) as service:
        final = await service.wait(answer["request_id"])
    assert final["status"] == "completed"
    assert final["progress"]["succeeded_images"] == 6
    assert all(image_host.hits[f"/fast{n}.jpg"] == 1 for n in range(5))
